"""Quantization-aware fine-tuning of an extracted subnet, optionally distilled from a teacher.

The teacher is the supernet's largest subnet (extracted like the student); its soft
predictions on the same augmented batch are mixed with the labels (or masks: the task
head's loss), as OFA fine-tunes its subnets. Images reach the teacher resized to its own
resolution, and a per-pixel teacher's predictions come back at the student's.
"""

from __future__ import annotations

from factory.core.backend import keras, tf
from factory.nas.supernet import resize
from factory.training.data import ImageData, make_dataset
from factory.training.portable.recipe import TrainConfig, make_optimizer


class Distillation(keras.Model):
    """Trains ``student`` on ``alpha`` * the targets + (1 - alpha) * the teacher's soft predictions, with the task
    head's losses."""

    def __init__(self, student: keras.Model, teacher: keras.Model, head, alpha: float = 0.5, **kwargs):
        super().__init__(**kwargs)
        self.student, self.teacher, self.head, self.alpha = student, teacher, head, alpha
        self.teacher.trainable = False

    def call(self, images, training=None):
        return self.student(images, training=training)

    def train_step(self, data):
        images, targets = data
        soft = tf.nn.softmax(self.teacher(resize(images, self.teacher.input_shape[1]), training=False))
        with tf.GradientTape() as tape:
            logits = self.student(images, training=True)
            loss = (self.alpha * self.head.loss(self.head.labels(targets), logits)
                    + (1 - self.alpha) * self.head.distill_loss(self.head.align(soft, logits), logits))
            loss += tf.add_n(self.student.losses) if self.student.losses else 0.0
        variables = self.student.trainable_variables
        self.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return {"loss": loss}


def qat_epochs(epochs: int, min_steps: int, steps_per_epoch: int) -> int:
    """``epochs``, raised so that fine-tuning takes at least ``min_steps`` steps (none if ``epochs`` is 0).

    Small data sets give few steps an epoch (digits: 10), too few for the quantizers'
    ranges and the weights to settle; a floor in steps makes one setting fit every data set.
    """
    if epochs < 1:
        return 0
    return max(epochs, -(-min_steps // max(steps_per_epoch, 1)))


def fine_tune(qat_model: keras.Model, data: ImageData, head, epochs: int, *, min_steps: int = 0,
              learning_rate: float = 0.005, batch_size: int = 128, teacher: keras.Model | None = None,
              seed: int = 0, verbose: int = 2) -> int:
    """A short cosine-decayed Nesterov SGD fine-tune of a QAT model on ``data``'s training split.

    ``data`` must already be at the model's input resolution; ``head`` (``factory.nas.heads``) gives the loss.
    Returns the epochs run.
    """
    if epochs < 1:
        return 0
    train = make_dataset(data.x_train, data.y_train, batch_size, training=True, flip=data.flip, seed=seed)
    steps = int(train.cardinality().numpy())
    epochs = qat_epochs(epochs, min_steps, steps)
    config = TrainConfig(epochs=epochs, learning_rate=learning_rate, warmup_epochs=0, batch_size=batch_size)
    optimizer = make_optimizer(config, steps, qat_model.trainable_variables)
    if teacher is not None:
        trainer = Distillation(qat_model, teacher, head)
        trainer.compile(optimizer=optimizer)
    else:
        trainer = qat_model
        trainer.compile(optimizer=optimizer, loss=lambda targets, logits: head.loss(head.labels(targets), logits))
    # one iterator for the whole run: a QAT model's fit paused about 2 s between epochs over a new one each epoch
    trainer.fit(train.repeat(), steps_per_epoch=steps, epochs=epochs, verbose=verbose)
    return epochs

"""Accuracy predictor: a subnet's accuracy from its architecture, trained on supernet evaluations.

The features are OFA's: per block position a one-hot kernel size and a one-hot expand
ratio (all zeros where the subnet skips the block), and a one-hot resolution. Two
models are fitted on the same split, a ridge regression and a small Keras MLP; the one
with the lower held-out RMSE is kept, and both scores are reported. Both are fitted to the accuracies' logits, so
every prediction is an accuracy between 0 and 1 (a linear fit to accuracies themselves once predicted 108%).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from factory.core.errors import FactoryError
from factory.core.files import atomic_directory, read_json, write_json
from factory.nas.space import SearchSpace


def one_hot_features(space: SearchSpace, encoded: np.ndarray) -> np.ndarray:
    """OFA's encoding of ``SearchSpace.encode`` vectors: (N, L) int -> (N, F) float32."""
    enc = np.atleast_2d(np.asarray(encoded))
    resolution, _, kernels, expands = space.split(enc)
    parts = [(resolution[:, None] == np.asarray(space.resolutions)[None, :])]
    for values, choices in ((kernels, space.kernel_sizes), (expands, space.expand_ratios)):
        parts.append((values[:, :, None] == np.asarray(choices)[None, None, :]).reshape(len(enc), -1))
    return np.concatenate(parts, axis=1).astype(np.float32)


EDGE = 1e-3  # accuracies of exactly 0 or 1 are fitted as these distances from the ends


def to_logit(accuracy) -> np.ndarray:
    a = np.clip(np.asarray(accuracy, np.float64), EDGE, 1 - EDGE)
    return np.log(a / (1 - a))


def from_logit(z) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(z, np.float64)))


def rmse(a, b) -> float:
    return float(np.sqrt(np.mean((np.asarray(a) - np.asarray(b)) ** 2)))


@dataclass
class AccuracyPredictor:
    """Predicts accuracy (0..1) for encoded subnets of one space."""

    space: SearchSpace
    kind: str  # "ridge" | "mlp"
    model: object
    report: dict
    target: str = "logit"  # what the model was fitted to; predictors saved before logits fitted "accuracy"

    def predict_encoded(self, encoded: np.ndarray) -> np.ndarray:
        x = one_hot_features(self.space, encoded)
        raw = self.model.predict(x) if self.kind == "ridge" else self.model(x, training=False).numpy().ravel()
        return from_logit(raw) if self.target == "logit" else raw

    def save(self, path: str | Path):
        import pickle

        with atomic_directory(path) as tmp:
            write_json(tmp / "predictor.json", {"space_fingerprint": self.space.fingerprint,
                                                "kind": self.kind, "target": self.target, "report": self.report})
            if self.kind == "ridge":
                (tmp / "ridge.pkl").write_bytes(pickle.dumps(self.model))
            else:
                self.model.save(tmp / "mlp.keras")

    @classmethod
    def load(cls, path: str | Path, space: SearchSpace) -> "AccuracyPredictor":
        import pickle

        path = Path(path)
        meta = read_json(path / "predictor.json")
        if meta["space_fingerprint"] != space.fingerprint:
            raise FactoryError(f"{path} predicts for space {meta['space_fingerprint']}, not {space.name} "
                               f"({space.fingerprint}): fit a predictor for this space")
        if meta["kind"] == "ridge":
            model = pickle.loads((path / "ridge.pkl").read_bytes())
        else:
            from factory.core.backend import keras

            model = keras.models.load_model(path / "mlp.keras")
        return cls(space, meta["kind"], model, meta["report"], meta.get("target", "accuracy"))


def _mlp(n_features: int, seed: int):
    from factory.core.backend import keras

    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((n_features,))] + [
        keras.layers.Dense(400, activation="relu") for _ in range(3)] + [keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
    return model


def fit_predictor(space: SearchSpace, encoded: np.ndarray, accuracy: np.ndarray, *,
                  holdout: float = 0.2, seed: int = 0, epochs: int = 300) -> AccuracyPredictor:
    """Fit ridge and MLP predictors, score both on held-out subnets, keep the better."""
    from scipy.stats import kendalltau
    from sklearn.linear_model import RidgeCV

    encoded, accuracy = np.asarray(encoded), np.asarray(accuracy, np.float32)
    if len(accuracy) < 10:
        raise FactoryError(f"{len(accuracy)} evaluated subnets are too few to fit a predictor: evaluate at least 10")
    order = np.random.default_rng(seed).permutation(len(accuracy))
    n_test = max(2, int(holdout * len(accuracy)))
    test, train = order[:n_test], order[n_test:]
    x, target = one_hot_features(space, encoded), to_logit(accuracy).astype(np.float32)
    ridge = RidgeCV(alphas=np.logspace(-3, 3, 13)).fit(x[train], target[train])
    mlp = _mlp(x.shape[1], seed)
    mlp.fit(x[train], target[train], epochs=epochs, batch_size=min(256, len(train)), verbose=0)
    scores = {}
    for kind, raw in (("ridge", ridge.predict(x[test])), ("mlp", mlp(x[test], training=False).numpy().ravel())):
        pred = from_logit(raw)
        scores[kind] = {"rmse": rmse(pred, accuracy[test]),
                        "kendall_tau": float(kendalltau(pred, accuracy[test]).statistic)}
    kind = min(scores, key=lambda k: scores[k]["rmse"])
    model = ridge if kind == "ridge" else mlp
    if kind == "ridge":  # refit on everything now that the choice is made
        model = RidgeCV(alphas=np.logspace(-3, 3, 13)).fit(x, target)
    report = {"kept": kind, "train_subnets": int(len(train)), "heldout_subnets": int(n_test), **scores}
    return AccuracyPredictor(space, kind, model, report)

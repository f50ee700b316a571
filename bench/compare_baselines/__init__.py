"""Baseline comparison: the factory's int8 models against hand-designed MobileNets at equal latency.

    python -m bench.compare_baselines --workdir runs/bench-supernet --device host-cpu-1t

On a supernet trained on CIFAR-10 (``bench/supernet.py`` leaves one in its work
directory), at three latency budgets (25%, 50% and 75% of the way from the fastest to
the largest subnet's predicted latency, as ``bench/search.py``, or ``--budgets-ms``): the factory's subnet
for each budget searched and exported as ``factory make`` does (under the table's margin,
chosen among the top 5 on int8 accuracy, measured at export and searched again when over
the budget), with its float, post-training int8 and QAT int8 test accuracy, .tflite size,
predicted and measured latency. Next to each,
keras.applications MobileNetV3Small and MobileNetV2 at the width multiplier (alpha) and
input resolution whose int8 model measures closest under the budget on the same profile
(at CIFAR-10's own 32x32 both networks shrink the image to 1x1 and even alpha 1.4 stays far
under every budget, so the images are upscaled as is usual for them), trained from
scratch on the same data for as many epochs as the supernet (same optimizer, schedule,
label smoothing, augmentation), converted to int8 by the same converter and timed by the
same runner. A baseline matched under a budget runs faster than the budget, so the
factory is also searched and exported at each baseline's own latency (timed just before
the search; less the table's cross-validated error, so that a typical prediction error
does not put it over), the like-for-like latency of the goal. At the end every model is timed
again side by side in rounds, and the median of the rounds is reported.
keras.applications' MobileNetV3 writes hard-sigmoid with TF op layers that tfmot cannot
wrap, so the baselines are post-training quantized. The factory's QAT fine-tune trains its
model more epochs, so each baseline is also trained as many epochs more with the same
fine-tune settings (no teacher) and post-training quantized: the shipped models are judged
at equal training, and the factory's post-training int8 against the baseline's is reported
too. The factory wins a pair when its QAT int8 beats the baseline both as trained and at equal
training, at equal or lower measured latency; the goal is met when every baseline loses at
least one pair. Results are cached per row in the output JSON, so an interrupted run resumes.

The baselines train here (MobileNetV2 at 128x128 takes 10-14 minutes an epoch on 2 cores)
or on a GPU machine: ``--plan-baselines`` writes what to train, ``bench/baselines.py``
trains it there under Keras 3, ``--baseline-weights`` brings the weights back (each row
says where its model was trained). Their rows come before the factory's, so they can be
done while the supernet still trains (give ``--baseline-epochs``). ``--archs`` limits a run to one
family of baselines, ``--match-as RESULTS`` matches the baselines as an earlier run did (a
follow-up run on another day then compares against the same ones), and ``--show RESULTS`` prints a
results file's table and verdicts again.
"""

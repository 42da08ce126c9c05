"""What needs the training install (`pip install 'bertclf[train]'`): one run's stages in order,

data.py          read, split and check the labelled files (feedback joins the training split)
pipeline.py      tokenize once; tf.data batches by length
model.py         build the classifier, precision, the probe head (fused.py, optimizer.py, schedule.py)
devices.py       one device or several (tf.distribute); resume.py: checkpoints of an interrupted run
fit.py           the fit: callbacks, early stopping, its record
calibration.py   temperature scaling on the validation split
evaluate.py      test metrics, the TF-IDF baseline, plots; re-scoring a saved model
export.py        the model folder: weights, ONNX serving graph (onnx_writer.py), golden texts, records
run.py           `train()`: the stages above, timed (stages.py)
"""

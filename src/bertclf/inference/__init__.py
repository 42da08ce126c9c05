"""What the serving install runs (no TensorFlow, Keras or pandas): load a model folder, tokenize,
batch by length, run its ONNX serving graph, decide labels (abstain, multi-label), check its golden
texts, and label whole files. `import-linter` (make lint) keeps training code and its libraries out;
the one exception is the predictor's TensorFlow engine, which imports training.keras_engine on
that path only."""

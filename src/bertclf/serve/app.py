"""Flask app factory; gunicorn runs `bertclf.serve.app:create_app()` in each worker, after the fork."""

import logging
from dataclasses import dataclass

from flask import Flask

from bertclf.config import ServeConfig
from bertclf.feedback import FeedbackStore, store_path
from bertclf.serve import requestlog
from bertclf.serve.auth import Tokens
from bertclf.serve.batcher import Batcher
from bertclf.serve.docs import docs_blueprint
from bertclf.serve.embed import bp as embed_bp
from bertclf.serve.errors import register_error_handlers
from bertclf.serve.explain import bp as explain_bp
from bertclf.serve.feedback import bp as feedback_bp
from bertclf.serve.metrics import Metrics
from bertclf.serve.model_manager import ModelManager
from bertclf.serve.page import bp as page_bp
from bertclf.serve.routes import bp

log = logging.getLogger(__name__)


@dataclass
class State:
    """What the routes share within one worker."""

    config: ServeConfig
    manager: ModelManager
    batcher: Batcher
    metrics: Metrics
    tokens: Tokens | None = None  # None: no token needed


def load_predictor(folder, config: ServeConfig):
    """Import ONNX Runtime (and TensorFlow, for a folder that needs it) only here, inside the
    worker: their thread pools and state must never cross a fork."""
    from bertclf.inference.predictor import Predictor

    return Predictor(
        folder,
        engine=config.engine,
        precision=config.precision,
        threads=config.threads_per_model(),
        max_seq_len=config.max_seq_len,
        min_confidence=config.min_confidence,
        long_text=config.long_text,
    )


def create_app(config: ServeConfig | None = None, load=None) -> Flask:
    """Build the app for one worker and start loading the model in the background.

    Args:
        config: server settings (default: from BERTCLF_* environment variables).
        load: callable(folder) -> Predictor (default: `load_predictor` with the settings); tests
            pass a fake or a tiny model.
    """
    config = config or ServeConfig.from_env()
    tokens = Tokens(config.api_tokens_file) if config.api_tokens_file else None  # a bad file fails here, at start
    load = load or (lambda folder: load_predictor(folder, config))
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = config.max_body_bytes
    # Keep the seed's key order: model, predictions, probabilities. (The attribute is on Flask's
    # DefaultJSONProvider, not on the JSONProvider base class mypy sees.)
    app.json.sort_keys = False  # type: ignore[attr-defined]
    metrics = Metrics()

    def served(predictor) -> tuple[str, ...]:
        """The model_info labels of a predictor: name, id, the precision and runtime it runs in, and why."""
        how = (str(getattr(predictor, key, "") or "") for key in ("precision", "runtime", "precision_basis"))
        return (predictor.name, predictor.config.get("id", ""), *how)

    def swapped(new, old):
        new.on_truncated = metrics.truncated.inc
        metrics.set_model(served(new), served(old) if old is not None else None)

    manager = ModelManager(config, load, on_swap=swapped, on_failure=metrics.reload_failures.inc)
    batcher = Batcher(
        lambda: manager.predictor,
        max_texts=config.max_items,
        max_waiting_texts=config.max_waiting_texts,
        on_batch=metrics.batch_texts.observe,
    )
    app.extensions["bertclf"] = State(config, manager, batcher, metrics, tokens)
    requestlog.configure(config.log_file, config.log_file_max_bytes, config.log_file_backups)
    requestlog.install(app, metrics, config.trusted_proxies())
    register_error_handlers(app)
    app.register_blueprint(bp)
    app.extensions["bertclf.feedback"] = FeedbackStore(store_path(config.feedback_db, config.models_dir))
    app.register_blueprint(feedback_bp)
    app.register_blueprint(embed_bp)
    app.register_blueprint(explain_bp)
    app.register_blueprint(page_bp)
    app.register_blueprint(docs_blueprint())
    manager.start()
    return app

"""GET /docs: Swagger UI on this server's /openapi.json (seed 004's interactive docs).

Swagger UI's files come inside the flask-swagger-ui wheel and are served from here: no CDN, so the
page works offline and in the api image. With API tokens on, its Authorize button takes one (the
document lists both token schemes), and its "Try it out" sends real requests to this server.
"""

from flask_swagger_ui import get_swaggerui_blueprint

DOCS = "/docs"


def docs_blueprint():
    return get_swaggerui_blueprint(
        DOCS,
        "/openapi.json",
        config={"app_name": "bertclf API", "tryItOutEnabled": True, "displayRequestDuration": True},
        blueprint_name="docs",
    )

"""``pylampe serve``: llama-cpp-python's OpenAI-compatible server with LaMPE models.

    from pylampe.server import create_app, LampeModelSettings, LampeServerSettings
    app = create_app(LampeServerSettings(), [LampeModelSettings(model="model.gguf")])
    # then: uvicorn.run(app, host="127.0.0.1", port=8000)

Needs the server extra: pip install "pylampe[server]".
"""

from .app import create_app
from .proxy import LampeProxy
from .settings import LampeConfigFileSettings, LampeModelSettings, LampeServerSettings

__all__ = [
    "LampeConfigFileSettings",
    "LampeModelSettings",
    "LampeProxy",
    "LampeServerSettings",
    "create_app",
]

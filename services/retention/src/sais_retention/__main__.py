from sais_shared.ops import serve

from .app import build_app
from .config import RetentionSettings

settings = RetentionSettings()
serve(build_app(settings), settings.http_port, settings.http_host)

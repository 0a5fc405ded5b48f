from sais_shared.ops import serve

from .app import build_app
from .config import DeliverySettings

settings = DeliverySettings()
serve(build_app(settings), settings.http_port, settings.http_host)

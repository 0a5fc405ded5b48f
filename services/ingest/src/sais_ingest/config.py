from __future__ import annotations

from sais_shared.settings import CommonSettings


class IngestSettings(CommonSettings):
    """ingest reads only the common settings today (``SAIS_*``)."""

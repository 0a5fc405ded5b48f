"""docs/settings.md: every ``SAIS_*`` setting, its meaning and default, generated from the settings classes
(``sais docs settings``; a test fails when the document and the code disagree)."""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined
from sais_delivery.config import DeliverySettings
from sais_eligibility.config import EligibilitySettings
from sais_ingest.config import IngestSettings
from sais_retention.config import RetentionSettings
from sais_shared.settings import CommonSettings

DOC = Path("docs/settings.md")
SERVICES: dict[str, type[CommonSettings]] = {
    "ingest": IngestSettings,
    "eligibility": EligibilitySettings,
    "delivery": DeliverySettings,
    "retention": RetentionSettings,
}
# Read by the CLI or a service outside the settings classes.
EXTRA = [
    (
        "SAIS_ACTOR",
        "every command that changes something",
        "",
        "The person running a `sais` command, recorded in "
        "the audit trail (ISP §14.3); `--actor` wins. Required by every command that changes something",
    ),
    ("SAIS_DEBUG", "the CLI", "", "1: a failing command shows its traceback instead of one line"),
    (
        "SAIS_CLI_LOG_FORMAT",
        "the CLI",
        "",
        "json or console: a command's log lines on stderr, as `--log-format`; none when unset",
    ),
    (
        "SAIS_<SERVICE>_GROUP_ID",
        "`sais kafka lag`",
        "`<prefix>-<service>`",
        "Each service's consumer group, as its own setting below",
    ),
]


def _default(info: FieldInfo) -> str:
    if info.default_factory is not None:
        value = info.default_factory()  # type: ignore[call-arg]  # none of ours takes the validated data
    elif info.default is PydanticUndefined:
        return "(required)"
    else:
        value = info.default
    if value is None or value == [] or value == "":
        return ""
    if hasattr(value, "get_secret_value"):
        return "(secret)"
    return f"`{value}`"


def rows() -> list[tuple[str, str, str, str]]:
    """(variable, used by, default, meaning) for every setting, common ones first."""
    out: list[tuple[str, str, str, str]] = []
    common = CommonSettings.model_fields
    own: dict[str, dict[str, str]] = {}  # a common setting a service gives its own default: service → default
    seen: dict[str, list[str]] = {}
    fields: dict[str, FieldInfo] = {}
    for service, cls in SERVICES.items():
        for name, info in cls.model_fields.items():
            if name in common:
                if _default(info) != _default(common[name]):
                    own.setdefault(name, {})[service] = _default(info)
                continue
            seen.setdefault(name, []).append(service)
            fields.setdefault(name, info)
    for name, info in common.items():
        default = _default(info)
        if name in own:
            default = ", ".join(f"{svc} {d}" for svc, d in own[name].items()) + (f"; else {default}" if default else "")
        out.append((f"SAIS_{name.upper()}", "every service and the CLI", default, info.description or ""))
    for name in sorted(seen):
        info = fields[name]
        out.append((f"SAIS_{name.upper()}", ", ".join(seen[name]), _default(info), info.description or ""))
    for service, cls in SERVICES.items():  # a service's own name for a common setting (its HTTP port)
        for info in cls.model_fields.values():
            if isinstance(info.validation_alias, AliasChoices):
                own_name = str(info.validation_alias.choices[0])
                out.append((own_name, service, _default(info), info.description or ""))
    return out + EXTRA


def render() -> str:
    lines = [
        "# Settings",
        "",
        "Every setting is an environment variable (`SAIS_*`), read when a service or a command starts. Secrets",
        "and keys are files, named by a `…_FILE` setting or found in `SAIS_CREDENTIALS_DIR`. Generated from the",
        "settings classes by `sais docs settings`: edit the code, not this page.",
        "",
        "| variable | used by | default | meaning |",
        "|---|---|---|---|",
    ]
    for var, who, default, meaning in rows():
        lines.append(f"| `{var}` | {who} | {default} | {' '.join(meaning.split()).replace('|', '/')} |")
    return "\n".join(lines) + "\n"


__all__ = ["DOC", "render", "rows"]

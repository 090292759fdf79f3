"""costserve's configuration: `$COSTSERVE_HOME/config.toml`, overridden by `COSTSERVE_*` variables.

`COSTSERVE_HOME` (default `~/.costserve`) holds the config file, run directories and the
user's catalog overrides (`catalog/offerings.csv` written by `costserve catalog refresh`,
`availability.csv`). Precedence, highest first: environment, config file, defaults.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from catalog.home import costserve_home  # re-exported: one definition for every layer
from costserve.errors import RequestError

__all__ = ["ConfigError", "Settings", "costserve_home", "load_settings"]


class Settings(BaseSettings):
    """User settings. Each field can be set in `config.toml` or as `COSTSERVE_<FIELD>`."""

    model_config = SettingsConfigDict(env_prefix="COSTSERVE_", extra="forbid")

    default_model: str = Field("SmolLM2-135M", description="model used when a job names none")
    default_max_tokens: int = Field(256, ge=1, description="output tokens for jobs that give no max_tokens")
    max_errors: int = Field(20, ge=0, description="bad lines printed before the rest are only counted")
    local_cpu_price_per_hour: float | None = Field(
        None, ge=0, description="$/h charged for this machine's CPU; None: a comparable cloud CPU instance"
    )
    broker: str | None = Field(None, description="Celery broker URL; None: an embedded Redis per run")
    check_clouds: bool = Field(
        True,
        description="plan only over the clouds SkyPilot reports enabled (its check, cached for an hour); "
        "false: every cloud in the catalog",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml = TomlConfigSettingsSource(settings_cls, toml_file=costserve_home() / "config.toml")
        return (init_settings, env_settings, toml)


class ConfigError(RequestError):
    """The config file or a COSTSERVE_* variable holds a bad value; the message names which."""


def load_settings() -> Settings:
    """Read settings from the environment and `$COSTSERVE_HOME/config.toml`.

    Raises ConfigError with a one-line message naming the file and the field at fault.
    """
    from pydantic import ValidationError

    path = costserve_home() / "config.toml"
    try:
        return Settings()
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "config"
        raise ConfigError(f"{path} (or COSTSERVE_{field.upper()}): {field}: {first['msg']}") from None
    except ValueError as exc:  # tomllib.TOMLDecodeError is a ValueError
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None

"""The one settings object, read from the environment (prefix ``ARENA_``)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from metrics.pairing import Strategy


class Settings(BaseSettings):
    """Arena settings; every field can be set as ``ARENA_<FIELD>`` in the environment."""

    model_config = SettingsConfigDict(env_prefix="ARENA_", extra="ignore")

    home: Path = Field(default=Path("./arena-data"), description="Data folder: database, images.")
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; default sqlite:///$ARENA_HOME/arena.db."
    )
    admin_token: SecretStr | None = Field(default=None, description="Bearer token for admin API.")
    match_ttl_seconds: int = Field(default=1800, gt=0, description="How long a match can be voted.")
    votes_per_minute: int = Field(default=30, ge=0, description="Per-voter vote limit; 0 = off.")
    both_bad_as_draw: bool = Field(default=True, description="Count 'both bad' as a draw.")
    elo_k: float = Field(default=32.0, gt=0, description="Elo K factor.")
    trueskill_mu: float = Field(default=25.0, description="TrueSkill initial mean.")
    trueskill_sigma: float = Field(default=25.0 / 3.0, gt=0, description="TrueSkill initial sd.")
    trueskill_beta: float = Field(default=25.0 / 6.0, gt=0, description="TrueSkill performance sd.")
    trueskill_tau: float = Field(
        default=25.0 / 3.0 / 100.0, ge=0, description="TrueSkill dynamics (package default)."
    )
    trueskill_draw_probability: float = Field(
        default=0.10, ge=0, lt=1, description="TrueSkill draw probability."
    )
    bootstrap_rounds: int = Field(default=100, ge=0, description="Bradley-Terry bootstrap rounds.")
    bootstrap_seed: int = Field(default=0, description="Bradley-Terry bootstrap seed.")
    matchmaking_strategy: Strategy = Field(
        default="active",
        description="How matches are chosen: uniform (random sets), balanced (fewest matches "
        "first) or active (most expected information; see metrics/pairing.py).",
    )

    @field_validator("home")
    @classmethod
    def _expand_home(cls, value: Path) -> Path:
        return value.expanduser()

    @property
    def url(self) -> str:
        """The database URL in force (explicit, or the SQLite file under ``home``)."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.home / 'arena.db').resolve()}"

    def masked(self) -> dict[str, object]:
        """The settings as a dict with secrets (admin token, URL password) masked."""
        from sqlalchemy.engine import make_url

        data: dict[str, object] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                value = "********" if value.get_secret_value() else ""
            elif isinstance(value, Path):
                value = str(value)
            data[name] = value
        data["database_url"] = make_url(self.url).render_as_string(hide_password=True)
        return data


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (cached; tests call ``get_settings.cache_clear()``)."""
    return Settings()

"""The one settings object, read from the environment (prefix ``ARENA_``)."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from metrics.pairing import Strategy

# A demo arena's home holds this file (written by `arena demo`): the notice its pages show and
# the prompt set its typed prompts are rendered with. The service reads it; it never imports
# the demo.
DEMO_MARKER = "demo.json"
# Where the CLI looks for an arena when ARENA_HOME is not set: the working folder itself,
# then these folders inside it (the default home, the demo's home).
ARENA_FOLDERS = ("arena-data", "arena-demo")


def find_arena(folder: Path) -> Path | None:
    """The arena home in or under ``folder`` (one holding ``arena.db``), if there is one."""
    for candidate in (folder, *(folder / name for name in ARENA_FOLDERS)):
        if (candidate / "arena.db").is_file():
            return candidate
    return None


def read_demo_marker(home: Path) -> dict[str, str]:
    """The demo marker of the arena at ``home`` ({} when it is not a demo arena)."""
    try:
        data = json.loads((home / DEMO_MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}
# Generous defaults: a real SDXL pool on one GPU renders for hours; a hung try still ends.
JOB_TIMEOUT_DEFAULTS: dict[str, float] = {"hash": 3600.0, "generate": 21600.0, "score": 7200.0}


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
    voter_secret: SecretStr | None = Field(
        default=None,
        description="Key that signs voter ids; default: a random key kept in "
        "$ARENA_HOME/voter-secret (give the same value to every process and host).",
    )
    trusted_proxy_header: str | None = Field(
        default=None,
        description="Header a reverse proxy sets to the client address (e.g. X-Forwarded-For, "
        "rightmost entry used); unset: the connection's own address.",
    )
    matches_per_minute: int = Field(default=60, ge=0, description="Per-voter match limit; 0 = off.")
    skips_per_minute: int = Field(default=30, ge=0, description="Per-voter skip limit; 0 = off.")
    prompts_per_hour: int = Field(
        default=30, ge=0, description="Per-voter limit on typed prompts; 0 = off."
    )
    address_matches_per_minute: int = Field(
        default=600, ge=0, description="Per-address match limit; 0 = off."
    )
    address_votes_per_minute: int = Field(
        default=300, ge=0, description="Per-address vote limit; 0 = off."
    )
    address_skips_per_minute: int = Field(
        default=300, ge=0, description="Per-address skip limit; 0 = off."
    )
    address_prompts_per_hour: int = Field(
        default=120, ge=0, description="Per-address limit on typed prompts; 0 = off."
    )
    address_voters_per_hour: int = Field(
        default=60, ge=0, description="Per-address limit on new voter ids; 0 = off."
    )
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
    prompt_sets: str = Field(
        default="default",
        description="Prompt set YAML files a new checkpoint is rendered on, comma-separated "
        "('default' = the shipped set).",
    )
    sdxl_config_dir: Path | None = Field(
        default=None,
        description="Local diffusers SDXL folder (configs, tokenizers) that single-file "
        "checkpoints load with offline, for `arena worker`.",
    )
    ccip_references: Path | None = Field(
        default=None,
        description="CCIP reference images, one subfolder per character; the worker scores "
        "every character that has one.",
    )
    ccip_model_dir: Path | None = Field(
        default=None, description="CCIP model folder (model_feat.onnx, model_metrics.onnx)."
    )
    clip_model: str | None = Field(default=None, description="open_clip model name for CLIP score.")
    clip_weights: Path | None = Field(default=None, description="Local CLIP weights file (.pt).")
    clip_config: Path | None = Field(
        default=None, description="open_clip model config JSON (architectures it does not ship)."
    )
    job_max_attempts: int = Field(
        default=3, ge=1, description="Tries of a job (crash or lost worker) before it fails."
    )
    job_lease_seconds: float = Field(
        default=120.0, gt=0, description="A worker silent this long loses its job to another."
    )
    worker_poll_seconds: float = Field(
        default=2.0, gt=0, description="How often an idle `arena worker` looks for jobs."
    )
    free_prompt_jobs_per_voter: int = Field(
        default=3, ge=0, description="Typed prompts one voter may have waiting for rendering."
    )
    free_prompt_jobs_total: int = Field(
        default=100, ge=0, description="Typed-prompt generate jobs waiting, all voters together."
    )

    job_timeout_seconds: dict[str, float] = Field(
        default_factory=lambda: dict(JOB_TIMEOUT_DEFAULTS),
        description="How long one try of a job may run before its worker gives it up (it is "
        'then retried or failed), per kind, as JSON: {"generate": 21600, "score": 7200, '
        '"hash": 3600}; one number sets every kind.',
    )
    ipv6_prefix: int = Field(
        default=64, ge=1, le=128,
        description="Per-address limits count IPv6 clients by this prefix (one /64 is one "
        "client: a host can change address inside its own /64 at will).",
    )
    public_url: str | None = Field(
        default=None,
        description="The address voters reach the server at (e.g. https://arena.example.org); "
        "with https the voter cookie is marked Secure.",
    )
    prompt_blocklist: Path | None = Field(
        default=None,
        description="File of tags typed prompts may not carry, one a line ('#' comments); "
        "default: the list shipped in arena/prompt_blocklist.txt.",
    )
    free_prompt_share: float = Field(
        default=0.25, gt=0, le=1,
        description="Most of the queued typed-prompt jobs one voter or one address may hold.",
    )
    address_reads_per_minute: int = Field(
        default=120, ge=0, description="Per-address leaderboard reads of the API; 0 = off."
    )

    @field_validator("job_timeout_seconds", mode="before")
    @classmethod
    def _timeouts(cls, value: object) -> object:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return dict.fromkeys(JOB_TIMEOUT_DEFAULTS, float(value))
        return value

    @field_validator("job_timeout_seconds")
    @classmethod
    def _positive_timeouts(cls, value: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(value) - set(JOB_TIMEOUT_DEFAULTS))
        if unknown:
            raise ValueError(f"unknown job kind {unknown[0]!r}; expected "
                             f"{', '.join(JOB_TIMEOUT_DEFAULTS)}")
        if any(not seconds > 0 for seconds in value.values()):
            raise ValueError("every job timeout must be a positive number of seconds")
        return {**JOB_TIMEOUT_DEFAULTS, **value}

    def job_timeout(self, kind: str) -> float:
        """Seconds one try of a job of ``kind`` may run."""
        return self.job_timeout_seconds.get(kind, max(JOB_TIMEOUT_DEFAULTS.values()))

    @property
    def secure_cookies(self) -> bool:
        """Whether the voter cookie is sent only over https (an https public URL)."""
        return (self.public_url or "").lower().startswith("https://")

    @field_validator("home")
    @classmethod
    def _expand_home(cls, value: Path) -> Path:
        return value.expanduser()

    @model_validator(mode="after")
    def _find_home(self) -> Settings:
        """Without ARENA_HOME or a database URL, the arena in or under the working folder
        (:func:`find_arena`); a demo arena's prompt set unless ARENA_PROMPT_SETS is set."""
        if "home" not in self.model_fields_set and not self.database_url:
            self.home = find_arena(Path.cwd()) or self.home
        marker = read_demo_marker(self.home)
        if "prompt_sets" not in self.model_fields_set and marker.get("prompt_sets"):
            self.prompt_sets = marker["prompt_sets"]
        return self

    @property
    def demo_note(self) -> str | None:
        """The notice of a demo arena (from its marker), or None for any other arena."""
        return read_demo_marker(self.home).get("note") or None

    @property
    def prompt_set_names(self) -> list[str]:
        """The configured prompt sets, in order."""
        return [part.strip() for part in self.prompt_sets.split(",") if part.strip()]

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
    """The process-wide settings (cached; tests call ``get_settings.cache_clear()``); a value
    of the wrong type is a one-line error naming its environment variable."""
    from pydantic import ValidationError

    from arena.errors import UserError

    try:
        return Settings()
    except ValidationError as exc:
        first = exc.errors()[0]
        name = "ARENA_" + "_".join(str(p) for p in first["loc"]).upper()
        raise UserError(f"{name}: {first['msg']}, got {first.get('input')!r}") from None

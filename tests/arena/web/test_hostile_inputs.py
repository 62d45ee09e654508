"""The committed corpus of hostile inputs (hostile_inputs.jsonl), each run against a real arena
on both databases: the expected 4xx (one error shape) or one-line CLI error, and nothing
stored changed. Typed prompts with HTML reach other voters as inert text."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from sqlalchemy import select

from arena.db import Database
from arena.models import Prompt
from tests.support.hostile import load_corpus, prepare, run_entry
from tests.support.pool import build_pool


def test_the_corpus_is_large_and_varied() -> None:
    corpus = load_corpus()
    assert len(corpus) >= 60
    assert len({e["id"] for e in corpus}) == len(corpus)
    targets = Counter(e["target"] for e in corpus)
    assert targets["api"] >= 40 and targets["cli"] >= 20


def test_every_hostile_input_is_handled(
    arena_env: Database, arena_home: Path, tmp_path: Path
) -> None:
    pool = build_pool(arena_env, arena_home, tmp_path / "pool-src")
    arena = prepare(arena_env, arena_home, tmp_path / "hostile", pool.checkpoints[0].name)
    problems = {}
    for entry in load_corpus():
        problem = run_entry(entry, arena)
        if problem is not None:
            problems[entry["id"]] = problem
    for key, problem in problems.items():
        print(f"{key}: {problem}")
    assert problems == {}
    # The HTML prompt was stored as typed text (plus the safe-mode rating), not interpreted.
    with arena_env.session() as s:
        texts = set(s.scalars(select(Prompt.text).where(Prompt.source == "voter")))
    assert any("<img src=x onerror=alert(1)><script>alert(2)</script>" in t for t in texts), texts

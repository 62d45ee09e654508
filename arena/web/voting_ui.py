"""The Gradio voting UI: a tab per match kind and the leaderboard, mounted at / by arena.web.app.

Before a vote the browser receives only what :class:`arena.matches.IssuedMatch` holds: the
prompt and, per image, an ``<img>`` whose URL is the image's random name for this match
(``/api/v1/images/<name>.png``, served to this voter only and only until the match expires),
never a name derived from the image. The match token stays on the server in ``gr.State``. The
vote's answer, the :class:`arena.votes.Reveal`, is the first thing that names a checkpoint.
The voter is the signed ``arena_voter`` cookie the page got on load.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

import gradio as gr

from arena.db import Database
from arena.errors import Conflict, Forbidden, Gone, InputError, NotFound, UserError
from arena.identity import client_address, verify_voter_id
from arena.matches import IssuedMatch, issue_match, skip_match
from arena.settings import Settings
from arena.votes import Reveal, record_vote, votes_cast
from arena.web.dashboard import build_leaderboard_tab
from arena.web.http import VOTER_COOKIE
from arena.web.voting_api import image_url
from arena.web.voting_assets import KEY_HELP, PAGE_CSS, PAGE_HEAD, SETTLED_JS, SHORTCUTS_JS
from metrics.match_kinds import KINDS, MATCH_KINDS

__all__ = ["PAGE_CSS", "PAGE_HEAD", "SHORTCUTS_JS", "build_ui", "requester", "voter_from_request"]

# What a voter may answer, and how many images a match shows, come from the match kinds'
# registry (:data:`metrics.match_kinds.KINDS`).
PLACES = ("1st", "2nd", "3rd", "4th")
# Why the free-prompt duel offers no draw, said under its buttons.
NO_DRAW_NOTE = (
    "No draw here: a free-prompt duel asks which image follows the prompt better (the "
    "report's format). If neither does, press **Both bad**."
)
# Refusals after which the match cannot be voted on any more: the voter needs a new one.
FINAL_REFUSALS = (Conflict, Gone, NotFound, Forbidden)


@dataclass(frozen=True)
class Current:
    """The match a tab is showing, kept server-side in ``gr.State``; ``open`` until voted."""

    token: str
    names: tuple[str, ...]  # the images' per-match names, by position
    open: bool = True


def voter_from_request(settings: Settings, request: gr.Request | None) -> str:
    """The voter behind a Gradio event: the signed ``arena_voter`` cookie that the API
    middleware sets on page load, so the UI and the JSON API are one voter."""
    if request is None:
        raise UserError("this event carries no request; reload the page")
    cookie = dict(request.cookies or {}).get(VOTER_COOKIE)
    if not cookie:
        raise UserError("this page has no voter cookie: allow cookies and reload the page")
    try:
        return verify_voter_id(settings, cookie)
    except UserError:
        raise UserError("this page's voter cookie is not valid: reload the page") from None


def requester(settings: Settings, request: gr.Request | None) -> tuple[str, str]:
    """The voter and the client address behind a Gradio event."""
    voter = voter_from_request(settings, request)
    if request is None:  # voter_from_request refuses an event without one already
        raise UserError("this event carries no request; reload the page")
    # The address the API middleware resolved for this HTTP request, when Gradio hands the
    # request over; else the same rule over the same header lines.
    resolved = getattr(getattr(request, "state", None), "client_address", None)
    if resolved is None:  # a request Gradio pickled keeps its state here (gradio 6.31)
        resolved = (getattr(request, "kwargs", None) or {}).get("request_state", {}).get(
            "client_address")
    if isinstance(resolved, str):
        return voter, resolved
    lines: list[str] = []
    if settings.trusted_proxy_header:
        headers = request.headers
        name = settings.trusted_proxy_header.lower()
        lines = (list(headers.getlist(name)) if hasattr(headers, "getlist")
                 else [v for k, v in dict(headers or {}).items() if k.lower() == name])
    host = request.client.host if request.client else None
    return voter, client_address(settings, host, lines)


def image_html(url: str, caption: str) -> str:
    """One match image as inert HTML: the per-match URL and a caption (escaped)."""
    return (
        f'<figure class="arena-figure"><img src="{html.escape(url)}" alt="{html.escape(caption)}"'
        ' style="max-width:100%;max-height:448px;display:block;margin:auto">'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def position_label(mode: str, position: int) -> str:
    """How a position is named on screen: A/B in a duel, 1-4 in a four-way match."""
    return KINDS[mode].position_label(position)


def _escape(text: str) -> str:
    """Text inert inside a Markdown table cell (checkpoint and config names are user-chosen):
    one line, markup characters escaped, and ':' escaped so no URL becomes a link."""
    flat = " ".join(text.split())
    return "".join("\\" + c if c in "\\`*_[]<>|~:" else c for c in flat)


def your_vote(reveal: Reveal, winner: int | str | None,
              ranking: list[int] | None) -> dict[int, str]:
    """What the voter said about each position: its place in a ranking, or the pick."""
    if ranking:
        return {position: PLACES[place] for place, position in enumerate(ranking)}
    if isinstance(winner, int):
        return {winner: "✔ your pick"}
    said = {"tie": "draw", "both_bad": "both bad"}.get(str(winner), "")
    return {image.position: said for image in reveal.images} if said else {}


def reveal_markdown(reveal: Reveal, winner: int | str | None = None,
                    ranking: list[int] | None = None) -> str:
    """The reveal: your vote, and which checkpoint and training config made each image (in
    the order you ranked them, when you ranked), and the vote count."""
    said = your_vote(reveal, winner, ranking)
    images = sorted(reveal.images, key=lambda i: ranking.index(i.position)) if ranking \
        else reveal.images
    lines = [
        "### Revealed",
        "",
        "| Image | Your vote | Checkpoint | Training config |",
        "|---|---|---|---|",
    ]
    for image in images:
        lines.append(
            f"| {position_label(reveal.mode, image.position)} | {said.get(image.position, '')} | "
            f"{_escape(image.checkpoint)} | {_escape(image.config)} |"
        )
    plural = "" if reveal.votes_cast == 1 else "s"
    lines += ["", f"You have cast **{reveal.votes_cast}** vote{plural}. Thank you!"]
    return "\n".join(lines)


def count_line(count: int) -> str:
    """The voter's vote count, as each match shows it."""
    return f"You have cast **{count}** vote{'' if count == 1 else 's'}."


class MatchPanel:
    """The components and event handlers of one match tab (fixed, free or ffa)."""

    def __init__(self, db: Database, settings: Settings, mode: str) -> None:
        self.db, self.settings, self.mode = db, settings, mode
        self.kind = KINDS[mode]
        self.size = self.kind.size
        self.state = gr.State(None)
        self.picks = gr.State([])  # four-way: positions clicked so far, best first
        self.prompt = gr.Textbox(label="Prompt", interactive=False, lines=1, max_lines=6)
        self.images: list[gr.HTML] = []
        self.choices: list[tuple[gr.Button, str, int | str]] = []
        self.pick_buttons: list[gr.Button] = []
        self.own_prompt: gr.Textbox | None = None
        if self.kind.rankings:
            self._four_way_layout()
        else:
            self._duel_layout()
        self.status = gr.Markdown("Loading a match…", elem_classes=["arena-status"])
        with gr.Row():
            self.next = gr.Button("Next match", variant="primary", visible=False,
                                  elem_id=f"{mode}-next")
            self.skip = gr.Button("Skip", variant="secondary", elem_id=f"{mode}-skip")
        gr.Markdown(KEY_HELP[mode], elem_classes=["arena-keys"])
        if self.kind.typed_prompts:
            with gr.Row(equal_height=True):
                self.own_prompt = gr.Textbox(
                    label="Your own prompt (optional)",
                    placeholder="Type a prompt to see it compared; empty for a pool prompt",
                    max_length=2000,
                    scale=4,
                )
                self.use_prompt = gr.Button("Match my prompt", scale=1)
        self._wire()

    def _image(self, position: int) -> gr.HTML:
        image = gr.HTML("", elem_classes=["arena-image"], min_height=160,
                        elem_id=f"{self.mode}-image-{position}")
        self.images.append(image)
        return image

    def _duel_layout(self) -> None:
        with gr.Row(equal_height=True, elem_classes=["arena-images"]):
            for position in range(self.size):
                self._image(position)
        with gr.Row():
            for label, key, winner in self.kind.buttons:
                button = gr.Button(label, interactive=False, elem_id=f"{self.mode}-vote-{key}")
                self.choices.append((button, key, winner))
        if not self.kind.ties:
            gr.Markdown(NO_DRAW_NOTE, elem_classes=["arena-keys"])

    def _four_way_layout(self) -> None:
        gr.Markdown("Click the images from best to worst (three are enough: the last is "
                    "implied), then **Submit**; or click one and submit it as the best.")
        with gr.Row(equal_height=True, elem_classes=["arena-grid-images"]):
            for position in range(self.size):
                with gr.Column(min_width=160):
                    self._image(position)
                    self.pick_buttons.append(gr.Button(
                        f"Choose image {position_label(self.mode, position)}", interactive=False,
                        size="sm", elem_id=f"{self.mode}-pick-{position}"))
        with gr.Row():
            self.undo = gr.Button("Undo", interactive=False, elem_id=f"{self.mode}-undo")
            self.submit = gr.Button("Submit", variant="primary", interactive=False,
                                    elem_id=f"{self.mode}-submit")

    @property
    def outputs(self) -> list[gr.components.Component]:
        """Every component a handler may update."""
        extra = [self.picks, *self.pick_buttons, self.undo, self.submit] \
            if self.kind.rankings else []
        return [self.state, self.prompt, *self.images, self.status,
                *(b for b, _, _ in self.choices), self.next, self.skip, *extra]

    def _controls(self, voting: bool) -> dict[Any, Any]:
        """Vote controls enabled while a match is open; "Next match" shown once it is not."""
        updates: dict[Any, Any] = {b: gr.update(interactive=voting) for b, _, _ in self.choices}
        updates[self.next] = gr.update(visible=not voting)
        updates[self.skip] = gr.update(interactive=voting)
        if self.kind.rankings:
            updates |= self._ranking([], voting)
        return updates

    def _ranking(self, picks: list[int], voting: bool = True) -> dict[Any, Any]:
        """The four-way controls for ``picks`` (positions clicked, best first): each image's
        button shows its place once ranked; Undo and Submit say what they would do."""
        order = picks + [p for p in range(self.size) if p not in picks] \
            if len(picks) >= self.size - 1 else picks
        updates: dict[Any, Any] = {self.picks: list(picks)}
        for position, button in enumerate(self.pick_buttons):
            label = position_label(self.mode, position)
            if position in order:
                updates[button] = gr.update(value=f"{PLACES[order.index(position)]}: {label}",
                                            interactive=False)
            else:
                updates[button] = gr.update(value=f"Choose image {label}", interactive=voting)
        updates[self.undo] = gr.update(interactive=voting and bool(picks))
        if len(order) == self.size:
            text = "Submit ranking " + " > ".join(position_label(self.mode, p) for p in order)
        elif picks:
            text = f"Submit {position_label(self.mode, picks[0])} as the best"
        else:
            text = "Submit"
        updates[self.submit] = gr.update(value=text, interactive=voting and bool(picks))
        return updates

    def _shown(self, issued: IssuedMatch, count: int) -> dict[Any, Any]:
        updates = self._controls(voting=True)
        names = tuple(shown.name for shown in issued.images)
        updates[self.state] = Current(issued.token, names)
        updates[self.prompt] = issued.prompt
        for image, shown in zip(self.images, issued.images, strict=True):
            updates[image] = image_html(image_url(shown.name),
                                        position_label(self.mode, shown.position))
        how = "Pick the best image." if self.kind.rankings else "Which image is better?"
        how = f"{how} {count_line(count)}"
        updates[self.status] = f"ℹ️ {issued.notice}\n\n{how}" if issued.notice else how
        return updates

    def _unavailable(self, message: str) -> dict[Any, Any]:
        """No match could be issued (empty pool, bad prompt): say why, offer to try again."""
        updates = self._controls(voting=False)
        updates[self.state] = None
        updates[self.prompt] = ""
        updates |= {image: "" for image in self.images}
        updates[self.status] = f"⚠️ {message}"
        return updates

    def issue(self, request: gr.Request | None, prompt: str | None = None) -> dict[Any, Any]:
        """Issue a new match of this tab's kind and show it, or say why none can be issued."""
        try:
            voter, address = requester(self.settings, request)
            issued = issue_match(self.db, self.settings, voter, self.mode, prompt,
                                 address=address)
        except InputError as exc:
            return self._unavailable(str(exc))
        return self._shown(issued, votes_cast(self.db, voter))

    def _revealed(self, current: Current, reveal: Reveal, winner: int | str | None,
                  ranking: list[int] | None) -> dict[Any, Any]:
        updates = self._controls(voting=False)
        updates[self.state] = Current(current.token, current.names, open=False)
        by_position = {image.position: image for image in reveal.images}
        said = your_vote(reveal, winner, ranking)
        for position, image in enumerate(self.images):
            shown = by_position[position]
            mark = f" · {said[position]}" if said.get(position) else ""
            updates[image] = image_html(
                image_url(current.names[position]),
                f"{position_label(self.mode, position)}{mark}: {shown.checkpoint} "
                f"({shown.config})",
            )
        if self.kind.rankings and ranking:
            updates |= self._ranking(ranking, voting=False)
        updates[self.status] = reveal_markdown(reveal, winner, ranking)
        return updates

    def _vote(
        self, current: Current | None, winner: int | str | None, ranking: list[int] | None,
        request: gr.Request | None,
    ) -> dict[Any, Any]:
        if current is None or not current.open:
            return {self.status: "⚠️ There is no open match here: press **Next match**."}
        try:
            voter, address = requester(self.settings, request)
            reveal = record_vote(self.db, self.settings, current.token, voter,
                                 winner=winner, ranking=ranking, address=address)
        except InputError as exc:  # the service's refusals and a vote the kind forbids
            if isinstance(exc, FINAL_REFUSALS):
                return {**self._controls(voting=False), self.status: f"⚠️ {exc}",
                        self.state: Current(current.token, current.names, open=False)}
            return {self.status: f"⚠️ {exc}"}
        return self._revealed(current, reveal, winner, ranking)

    def _voter(
        self, winner: int | str
    ) -> Callable[[Current | None, gr.Request], dict[Any, Any]]:
        def vote(current: Current | None, request: gr.Request) -> dict[Any, Any]:
            return self._vote(current, winner, None, request)

        return vote

    def _picker(self, position: int) -> Callable[[list[int], Current | None], dict[Any, Any]]:
        def pick(picks: list[int], current: Current | None) -> dict[Any, Any]:
            if current is None or not current.open:
                return {self.status: "⚠️ There is no open match here: press **Next match**."}
            if position in picks or len(picks) >= self.size - 1:
                return gr.skip()
            return self._ranking([*picks, position])

        return pick

    def undo_pick(self, picks: list[int], current: Current | None) -> dict[Any, Any]:
        """Take back the last image clicked."""
        if current is None or not current.open or not picks:
            return gr.skip()
        return self._ranking(picks[:-1])

    def submit_ranking(self, picks: list[int], current: Current | None,
                       request: gr.Request) -> dict[Any, Any]:
        """Vote the images clicked: a full ranking from three on, else the first as best."""
        if not picks:
            return {self.status: "⚠️ Click the images from best to worst first."}
        if len(picks) >= self.size - 1:
            ranking = picks + [p for p in range(self.size) if p not in picks]
            return self._vote(current, None, ranking, request)
        return self._vote(current, picks[0], None, request)

    def ensure(self, current: Current | None, request: gr.Request) -> dict[Any, Any]:
        """On opening the tab: issue a match unless one is already showing."""
        if current is not None:
            return gr.skip()
        return self.issue(request)

    def next_match(self, request: gr.Request) -> dict[Any, Any]:
        """A new match from the pool, without reloading the page."""
        return self.issue(request)

    def skip_then_next(self, current: Current | None, request: gr.Request) -> dict[Any, Any]:
        """Pass on the open match (it can no longer be voted on) and show a new one."""
        if current is not None and current.open:
            # Already gone (expired, voted on elsewhere): nothing is left to skip.
            try:
                voter, address = requester(self.settings, request)
                with suppress(*FINAL_REFUSALS):
                    skip_match(self.db, self.settings, current.token, voter, address)
            except InputError as exc:  # over the skip limit, or no voter cookie
                return {self.status: f"⚠️ {exc}"}
        return self.issue(request)

    def with_prompt(self, text: str, request: gr.Request) -> dict[Any, Any]:
        """A free-prompt duel on the voter's own prompt (queued for generation if unknown)."""
        return self.issue(request, prompt=text or None)

    def _wire(self) -> None:
        mode, outputs = self.mode, self.outputs
        # Every button a key can press tells the page's shortcuts when its event is back.
        keyed = [
            button.click(self._voter(winner), inputs=[self.state], outputs=outputs,
                         api_name=f"{mode}_vote_{key}")
            for button, key, winner in self.choices
        ]
        keyed.append(self.next.click(self.next_match, inputs=None, outputs=outputs,
                                     api_name=f"{mode}_next"))
        keyed.append(self.skip.click(self.skip_then_next, inputs=[self.state], outputs=outputs,
                                     api_name=f"{mode}_skip"))
        if self.kind.rankings:
            ranking = [self.picks, *self.pick_buttons, self.undo, self.submit, self.status]
            keyed += [
                button.click(self._picker(position), inputs=[self.picks, self.state],
                             outputs=ranking, api_name=f"{mode}_pick_{position + 1}")
                for position, button in enumerate(self.pick_buttons)
            ]
            keyed.append(self.undo.click(self.undo_pick, inputs=[self.picks, self.state],
                                         outputs=ranking, api_name=f"{mode}_undo"))
            keyed.append(self.submit.click(self.submit_ranking, inputs=[self.picks, self.state],
                                           outputs=outputs, api_name=f"{mode}_submit"))
        for event in keyed:
            event.then(None, js=SETTLED_JS, api_visibility="private")
        if self.own_prompt is not None:
            self.use_prompt.click(self.with_prompt, inputs=[self.own_prompt], outputs=outputs,
                                  api_name="free_prompt")
            self.own_prompt.submit(self.with_prompt, inputs=[self.own_prompt], outputs=outputs,
                                   api_visibility="private")


def build_ui(db: Database, settings: Settings) -> gr.Blocks:
    """The arena's Gradio app: fixed-character, free-prompt and four-way tabs, and the leaderboard.

    A match is issued when its tab is first opened (the fixed tab on page load); the
    leaderboard is only read when its tab is opened, so a page names no checkpoint until
    the voter has voted.
    """
    with gr.Blocks(title="Illustrious Arena", analytics_enabled=False) as blocks:
        gr.Markdown(
            "# Illustrious Arena\n"
            "Vote for the image you prefer; the anonymous checkpoints and their training "
            "configs are revealed after your vote.",
            elem_classes=["arena-header"],
        )
        demo_note = gr.HTML(visible=False, elem_id="demo-note")
        with gr.Tabs():
            panels = {}
            for mode, kind in KINDS.items():
                with gr.Tab(kind.label, id=mode, elem_id=f"tab-{mode}") as tab, gr.Column(
                    elem_classes=["arena-panel", f"arena-panel-{mode}",
                                  "arena-ranking" if kind.rankings else "arena-duel"]
                ):
                    panels[mode] = panel = MatchPanel(db, settings, mode)
                if mode != MATCH_KINDS[0]:  # the first tab gets its match on page load instead
                    tab.select(panel.ensure, inputs=[panel.state], outputs=panel.outputs,
                               api_visibility="private")
            with gr.Tab("Leaderboard", id="leaderboard", elem_id="tab-leaderboard") as board_tab:
                build_leaderboard_tab(db, settings, board_tab)
        first = panels[MATCH_KINDS[0]]
        blocks.load(first.ensure, inputs=[first.state], outputs=first.outputs,
                    api_visibility="private")
        blocks.load(lambda: demo_note_update(settings), outputs=demo_note,
                    api_visibility="private")
    return blocks


def demo_note_update(settings: Settings) -> dict[str, Any]:
    """On page load: the demo's one notice, shown only in a demo arena (its home carries the
    demo marker, :data:`arena.settings.DEMO_MARKER`), folded to one line; it names no
    checkpoint."""
    note = settings.demo_note
    if not note:
        return gr.update(value="", visible=False)
    head = html.escape(note.split(":", 1)[0]) if ":" in note else "Demo arena"
    return gr.update(value=f"<details><summary>ℹ️ {head} (what this means)</summary>"
                           f"{html.escape(note)}</details>", visible=True)

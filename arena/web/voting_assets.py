"""What the voting page carries besides components: its stylesheet, its keyboard shortcuts
(a script run once on page load) and the line on each voting tab that names them.

The shortcuts press the tab's own buttons (found by their element ids, ``<mode>-<action>``),
so a key does exactly what a click does, one at a time: the next key waits until the previous
button's event has come back; keys typed into a text field are left alone.
"""

from __future__ import annotations

import json

__all__ = ["KEY_HELP", "PAGE_CSS", "PAGE_HEAD", "SETTLED_JS", "SHORTCUTS_JS"]

# The line under each voting tab's buttons.
KEY_HELP = {
    "fixed": "Keys: **A** / **←** A is better · **B** / **→** B is better · **D** draw · "
             "**X** both bad · **S** skip · **N** / **Enter** next match",
    "free": "Keys: **A** / **←** A is better · **B** / **→** B is better · **X** both bad · "
            "**S** skip · **N** / **Enter** next match",
    "ffa": "Click the images (or press **1**-**4**) from best to worst · **Backspace** undo · "
           "**Enter** submit · **S** skip · **N** next match",
}

# Key -> the actions tried in order (the first enabled, visible button is pressed).
_KEYS = {
    "duel": {"a": ["vote-a"], "arrowleft": ["vote-a"], "b": ["vote-b"],
             "arrowright": ["vote-b"], "d": ["vote-tie"], "x": ["vote-both_bad"],
             "s": ["skip"], "n": ["next"], "enter": ["next"]},
    "ranking": {"1": ["pick-0"], "2": ["pick-1"], "3": ["pick-2"], "4": ["pick-3"],
            "backspace": ["undo"], "u": ["undo"], "enter": ["submit", "next"], "s": ["skip"],
            "n": ["next"]},
}

SHORTCUTS_JS = """
() => {
  const keys = __KEYS__;
  const usable = (el) => el && !el.disabled && el.offsetParent !== null;
  const press = (mode, actions) => {
    for (const action of actions) {
      const button = document.getElementById(`${mode}-${action}`);
      if (usable(button)) { button.click(); return true; }
    }
    return false;
  };
  // One shortcut at a time: a key pressed while the previous one's event is on its way waits
  // for it (every button a key presses chains SETTLED_JS), so keys typed fast are neither
  // dropped nor sent with the state from before the previous one changed it.
  const waiting = [];
  let busy = false, timer = null;
  const pump = () => {
    while (!busy && waiting.length) {
      const [mode, actions] = waiting.shift();
      if (press(mode, actions)) { busy = true; timer = setTimeout(settled, 5000); }
    }
  };
  const settled = () => { clearTimeout(timer); busy = false; pump(); };
  window.arenaSettled = settled;
  const enqueue = (mode, actions) => { waiting.push([mode, actions]); pump(); };
  const openPanel = () => [...document.querySelectorAll(".arena-panel")]
    .find((p) => p.offsetParent !== null);
  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const target = event.target;
    if (target && (["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName)
                   || target.isContentEditable)) return;
    const panel = openPanel();
    if (!panel) return;
    const mode = panel.dataset.mode || [...panel.classList]
      .find((c) => c.startsWith("arena-panel-")).slice("arena-panel-".length);
    const kind = panel.classList.contains("arena-ranking") ? "ranking" : "duel";
    const actions = keys[kind][event.key.toLowerCase()];
    if (!actions) return;
    const now = actions.some((a) => usable(document.getElementById(`${mode}-${a}`)));
    if (!now && !busy && !waiting.length) return;  // nothing to press: the key is the browser's
    event.preventDefault();
    enqueue(mode, actions);
  });
  // A ranking match: clicking an image ranks it next, as the button under it does.
  document.addEventListener("click", (event) => {
    const image = event.target.closest && event.target.closest(".arena-ranking [id*='-image-']");
    if (!image) return;
    const [mode, position] = image.id.split("-image-");
    enqueue(mode, ["pick-" + position]);
  });
  // Leaderboard cells cut short (ellipsis) show their full text on hover.
  document.addEventListener("mouseover", (event) => {
    const cell = event.target.closest && event.target.closest("#leaderboard-table td");
    if (cell && !cell.title) cell.title = cell.textContent.trim();
  });
  window.arenaShortcuts = true;
}
""".replace("__KEYS__", json.dumps(_KEYS))

# Chained after the event of every button a key can press: lets the next waiting key go.
SETTLED_JS = "() => { if (window.arenaSettled) window.arenaSettled(); }"

PAGE_CSS = """
.arena-figure { margin: 0; }
.arena-image img { width: 100%; height: auto; max-height: 62vh; object-fit: contain; }
.arena-ranking .arena-image { cursor: pointer; }
.arena-keys { font-size: 0.85em; opacity: 0.85; }
.arena-status th { white-space: nowrap; word-break: normal; }
#leaderboard-table table { font-size: 12.5px; }
#leaderboard-table th, #leaderboard-table td { padding-left: 5px !important;
                                               padding-right: 5px !important; }
#leaderboard-table th, #leaderboard-table th * { white-space: nowrap !important;
                                                 word-break: keep-all !important; }
#leaderboard-table td, #leaderboard-table td * { max-width: 16em; overflow: hidden;
                                                 text-overflow: ellipsis; white-space: nowrap; }
.arena-status td { word-break: normal; overflow-wrap: anywhere; }
.arena-header h1 { margin: 0 0 0.2em 0; }
.arena-header p { margin: 0; }
#demo-note { font-size: 0.85em; }
#demo-note summary { cursor: pointer; }
@media (max-width: 640px) {
  .arena-image .html-container { padding: 0 !important; }
  .arena-header h1 { font-size: 1.35rem; }
  .arena-header p { font-size: 0.82rem; line-height: 1.3; }
  .tab-container button { padding: 4px 7px !important; font-size: 13px !important; }
  .arena-images { flex-wrap: nowrap !important; gap: 4px !important; }
  .arena-images > * { min-width: 0 !important; flex: 1 1 0 !important; }
  .arena-grid-images { flex-wrap: wrap !important; gap: 4px !important; }
  .arena-grid-images > * { min-width: calc(50% - 4px) !important;
                          flex: 1 1 calc(50% - 4px) !important; }
  .arena-image { padding: 0 !important; }
}
"""

# Gradio scopes PAGE_CSS inside its app container; the page margins around that container
# need a stylesheet of their own: on a phone the images get the width instead.
PAGE_HEAD = """<style>
@media (max-width: 640px) {
  .gradio-container .main.fillable.app { padding-left: 4px !important;
                                         padding-right: 4px !important; }
}
</style>"""

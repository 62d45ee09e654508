"""The web layer: JSON API, Gradio arena tabs and the leaderboard dashboard."""

"""The web side of the arena: JSON API routers and the leaderboard dashboard (the app and the
Gradio voting tabs still live in arena/)."""

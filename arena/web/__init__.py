"""The web side of the arena: JSON API routers (the app and Gradio UI still live in arena/)."""

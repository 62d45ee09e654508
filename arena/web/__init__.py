"""HTTP and UI only: the app, the shared HTTP plumbing, the voters' and the admin JSON API, the
Gradio voting UI and its leaderboard tab. Imports the domain and :mod:`arena.leaderboard`;
nothing outside web/ and cli/ imports it."""

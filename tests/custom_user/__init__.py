"""The app under a custom user model: UUID primary key, email login, no admin registered.

Run on its own, with its own settings (the user model is fixed per process):
``python -m pytest --ds=tests.settings_custom_user tests/custom_user``.
"""

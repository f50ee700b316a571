"""The application: work-directory stages, ``make``, plots, the console and the CLI.

The only floor that imports ``export``; nothing below imports it.
"""

"""The review workspace: a queue of recognised lines, worst first, corrected with the keyboard.

models (the claim a reviewer holds on a line), selectors (the queue and its
order, progress), services (claim, save, skip), views and urls (pages at
/review/ and their small JSON actions).
"""

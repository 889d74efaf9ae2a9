"""Acquisition under uncertainty: which candidates a round spends its relaxations on.

``functions``: acquisition values (greedy, lower confidence bound, expected improvement, random) and a
diversity-aware selection, pure numpy. ``surrogate``: an ensemble surrogate of the formation energy trained on
the campaign's own relaxations, with its spread as the uncertainty.
"""

"""Microstructure images (issue 22): physical data generators, their statistics and effective properties.

Images are 2D periodic two-phase maps, ``bool`` arrays where True is the phase of interest (the A-rich phase of a
spinodal pattern, the pore space of a porous medium). Everything here is a pure function of numpy arrays.
"""

"""glassforge: a text-to-image diffusion engine made of glass.

Every step from the prompt to the pixels can be watched and checked. The sampling core lives in
:mod:`glassforge.sampling`; the 2-D toy world used as an exact oracle lives in :mod:`glassforge.toy`.
"""

__version__ = "0.1.0"

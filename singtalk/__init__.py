"""singtalk: tell talking from singing in any audio.

The library has no Streamlit import; the app in ``pages/`` and the ``singtalk``
command line are thin views over it.
"""

__version__ = "0.1.0"

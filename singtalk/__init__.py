"""singtalk: tell singing, talking and no voice apart in any audio.

The library has no Streamlit import; the app in ``app_pages/`` and the ``singtalk``
command line are thin views over it.
"""

__version__ = "0.1.0"

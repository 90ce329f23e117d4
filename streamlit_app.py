"""singtalk app router: page config, navigation, the serving model (its date and figures) in the sidebar.

The views live in ``app_pages/``, not ``pages/``: with a ``pages/`` folder Streamlit
falls back to its v1 multipage mode for the first run of a fresh server, and a deep
link (``/training``) then runs the page without this router.
"""

import sys
from pathlib import Path

import streamlit as st

if str(Path(__file__).parent) not in sys.path:  # `streamlit run` adds it; AppTest does not
    sys.path.insert(0, str(Path(__file__).parent))

from appkit import access, resources  # noqa: E402
from singtalk.memory import limit_malloc_arenas  # noqa: E402

limit_malloc_arenas()  # one script thread per session: without a cap each may grow an arena of its own

st.set_page_config(page_title="singtalk", page_icon=":material/graphic_eq:", layout="wide")

page = st.navigation([  # a visitor's list holds no team page, so /training and /review do not exist for them
    st.Page("app_pages/classify.py", title="Classify", icon=":material/graphic_eq:", default=True),
    st.Page("app_pages/dataset.py", title="Dataset", icon=":material/dataset:"),
] + ([
    st.Page("app_pages/training.py", title="Training", icon=":material/model_training:"),
    st.Page("app_pages/review.py", title="Review", icon=":material/rate_review:"),
] if access.is_team() else []))

with st.sidebar:
    serving = resources.serving_description()
    if serving:
        st.caption(f"Serving model: **{serving[1]}**", help=f"Version {serving[0]} (Review page: all versions).")
    else:
        st.caption("No model installed yet.")

access.sign_in_box()
page.run()
resources.warm_up_in_background()

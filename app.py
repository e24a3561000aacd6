"""The CBIR app: ``streamlit run app.py``.

Three pages over ``core/``: crop-and-search, evaluation metrics and galleries. Networks, descriptors and
Annoy indexes are loaded once per process (``pages/common.py``) and shared by every session.

Nothing leaves the machine: the icon font ships with Streamlit, and the favicon is set here (a page
icon would otherwise become the favicon, which Streamlit fetches from Google's font servers).
"""
import streamlit as st

st.set_page_config(page_title="Image retrieval", page_icon="🔎", layout="wide", initial_sidebar_state="auto")
# a laptop screen is 800 px high: less empty space above the page title
st.html("<style>[data-testid='stMainBlockContainer'] { padding-top: 2.5rem; }</style>")
st.navigation([
    st.Page("pages/search.py", title="Search", icon=":material/image_search:", default=True),
    st.Page("pages/metrics.py", title="Metrics", icon=":material/monitoring:"),
    st.Page("pages/galleries.py", title="Galleries", icon=":material/photo_library:"),
]).run()

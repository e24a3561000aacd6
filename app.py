"""The CBIR app: ``streamlit run app.py``.

Three pages over ``core/``: crop-and-search, evaluation metrics and galleries. Networks, descriptors and
Annoy indexes are loaded once per process (``pages/common.py``) and shared by every session.

Nothing leaves the machine: the icon font ships with Streamlit, and the favicon is set here (a page
icon would otherwise become the favicon, which Streamlit fetches from Google's font servers).
"""
import streamlit as st

st.set_page_config(page_title="Image retrieval", page_icon="🔎", layout="wide", initial_sidebar_state="auto")
# a laptop screen is 800 px high: less empty space above the page title. Below 1000 px the search page
# stacks the results under the query: its Search button then floats at the bottom of the window
st.html("<style>[data-testid='stMainBlockContainer'] { padding-top: 2.5rem; }"
        "@media (max-width: 1000px) { .st-key-search { position: fixed; bottom: 1rem; right: 1.5rem; width: 12rem;"
        " z-index: 99; box-shadow: 0 2px 8px rgba(0,0,0,.25); border-radius: .5rem; } }</style>")
st.navigation([
    st.Page("pages/search.py", title="Search", icon=":material/image_search:", default=True),
    st.Page("pages/metrics.py", title="Metrics", icon=":material/monitoring:"),
    st.Page("pages/galleries.py", title="Galleries", icon=":material/photo_library:"),
]).run()

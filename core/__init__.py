"""Content-based image retrieval core: descriptors, indexes, evaluation. Free of Streamlit."""

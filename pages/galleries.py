"""Galleries: every registered gallery with its folder, size, ground truth, descriptor caches
(embedding config) and Annoy indexes (parameters and measured recall), and deletion (the
descriptors and indexes only, never the images). Galleries are created and updated with
``python -m core index --folder PATH --name NAME``."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from core import CacheInfo, delete_gallery, escape_markdown, folder_size, gallery_entries


def caches_table(caches: list[CacheInfo]) -> pd.DataFrame:
    rows = []
    for c in caches:
        indexes = "; ".join(f"{ix.annoy_metric}, {ix.n_trees} trees, search_k {ix.search_k}, "
                            f"recall@10 {ix.recall_at_10:.3f}" for ix in c.indexes) or "none"
        rows.append({"embedding": c.label, "key": c.key, "images": c.n_images, "dim": c.dim,
                     "complete": c.complete, "annoy indexes": indexes})
    return pd.DataFrame(rows)


def main() -> None:
    st.title("Galleries")
    entries = gallery_entries()
    if not entries:
        st.info("No gallery yet. Any folder of images becomes one:\n\n"
                "```\npython -m core index --folder PATH/TO/IMAGES --name my-gallery\n```")
        return
    for entry in entries:
        g = entry.gallery
        n, size = folder_size(g) if g.root.is_dir() else (0, 0)
        with st.container(border=True):
            st.subheader(g.name)
            st.caption(f"{escape_markdown(str(g.root))} · {n} images, {size / 1e6:.1f} MB"
                       + (f" · ground truth: {g.dataset}" if g.dataset else "")
                       + ("" if g.root.is_dir() else " · folder missing"))
            if entry.caches:
                st.dataframe(caches_table(entry.caches), hide_index=True)
            else:
                st.caption("No descriptors yet: `python -m core index --name " + g.name + "`")
            confirm = st.checkbox(f"Delete {g.name}'s descriptors and indexes (the images stay)", key=f"confirm_{g.name}")
            if st.button("Delete gallery", key=f"delete_{g.name}", disabled=not confirm, type="primary"):
                delete_gallery(g.name)
                st.cache_resource.clear()
                st.cache_data.clear()
                st.rerun()


main()

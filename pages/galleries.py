"""Galleries: every registered gallery with a few thumbnails, its folder, size, ground truth,
descriptor caches (embedding, size on disk) and saved indexes (Annoy, HNSW: parameters and
measured recall), the caches another process is embedding right now, and deletion, confirmed by
typing the name: of the descriptors and indexes, or of the whole gallery record (never the
images). Galleries are created and updated with ``python -m core index --folder PATH --name NAME``."""
from __future__ import annotations

import shlex
from pathlib import Path

import pandas as pd
import streamlit as st

from core import (
    CacheInfo,
    GalleryError,
    cache_bytes,
    caches_in_progress,
    delete_descriptors,
    delete_gallery,
    embedding_name,
    escape_markdown,
    folder_size,
    gallery_entries,
    load_embeddings,
    near_duplicates,
    printable,
    register_gallery,
    sample_images,
)
from pages.common import embed_gallery, through_app, thumb_uri


def caches_table(gallery: str, caches: list[CacheInfo]) -> pd.DataFrame:
    rows = []
    for c in caches:
        rows.append({"embedding": embedding_name(c.config), "key": c.key, "images": c.n_images, "dim": c.dim,
                     "on disk (MB)": cache_bytes(gallery, c.key) / 1e6, "complete": c.complete,
                     "indexes": "; ".join(ix.describe() for ix in c.indexes) or "none"})
    return pd.DataFrame(rows)


def in_progress(gallery: str) -> bool:
    """Say which caches of ``gallery`` a process is embedding now (True when any)."""
    work = caches_in_progress(gallery)
    for w in work:
        done = f"{w.n_done} images embedded so far" if w.n_done is not None else "no checkpoint yet"
        st.info(f"Embedding in progress ({w.label or w.key}): {done}. Reload the page to follow it.",
                icon=":material/hourglass_top:")
    return bool(work)


def deletion(g, size_text: str) -> None:
    """Two honest actions, each confirmed by typing the gallery's name: delete the descriptors
    and indexes (the gallery stays listed and can be indexed again), or forget the gallery
    (record, descriptors and indexes). The image folder is never touched."""
    c = st.columns(2)
    if c[0].button("Delete descriptors and indexes…", key=f"ask_descriptors_{g.name}", icon=":material/delete_sweep:"):
        st.session_state["confirm"] = ("descriptors", g.name)
    if c[1].button("Forget this gallery…", key=f"ask_forget_{g.name}", icon=":material/delete_forever:"):
        st.session_state["confirm"] = ("forget", g.name)
    action, name = st.session_state.get("confirm", (None, None))
    if name != g.name:
        return
    with st.container(border=True, key=f"confirm_box_{g.name}"):
        if action == "descriptors":
            st.warning(f"Deletes the descriptors and indexes of **{g.name}** ({size_text}). The gallery stays in "
                       "the list, with a button to index it again; the images stay where they are.")
        else:
            st.warning(f"Removes **{g.name}** from the app: its record, descriptors and indexes ({size_text}). "
                       f"The images in {escape_markdown(str(g.root))} stay; this command brings the gallery back. "
                       "Sessions open on it in other tabs switch to another gallery and say so.")
            st.code(f"python -m core index --folder {shlex.quote(printable(str(g.root)))} --name {g.name}",
                    language=None)
        typed = st.text_input(f"Type {g.name} to confirm", key=f"confirm_{g.name}")
        b = st.columns(2)
        if b[0].button("Delete" if action == "descriptors" else "Forget", key=f"delete_{g.name}", type="primary",
                       disabled=typed != g.name):
            if action == "descriptors":
                delete_descriptors(g.name)
            else:
                delete_gallery(g.name)
            st.session_state.pop("confirm")
            st.cache_resource.clear()
            st.cache_data.clear()
            st.rerun()
        if b[1].button("Cancel", key=f"cancel_{g.name}"):
            st.session_state.pop("confirm")
            st.rerun()


def duplicates_panel(g, caches: list[CacheInfo]) -> None:
    """Groups of near-identical images under the gallery's first complete embedding, with a
    threshold: for cleaning a photo folder, or spotting a query copied into the gallery."""
    usable = [c for c in caches if c.usable]
    if not usable:
        return
    with st.expander("Near-duplicates"):
        threshold = st.slider("Cosine of the descriptors at least", 0.80, 1.0, 0.95, 0.005, key=f"dup_t_{g.name}",
                              help="1.0: the same picture; about 0.95: resized, recompressed or lightly cropped "
                                   "copies; lower: near-identical scenes")
        if st.button("Find near-duplicates", key=f"dup_{g.name}", icon=":material/content_copy:"):
            emb = load_embeddings(g.name, usable[0].config)
            st.session_state[f"dups_{g.name}"] = (threshold, near_duplicates(emb.vectors, emb.ids, threshold))
        found = st.session_state.get(f"dups_{g.name}")
        if found is None:
            return
        at, groups = found
        st.caption(f"{len(groups)} group{'s' if len(groups) != 1 else ''} at cosine ≥ {at:g} ({embedding_name(usable[0].config)})"
                   + ("; the 20 largest:" if len(groups) > 20 else ""))
        for n, group in enumerate(groups[:20]):
            strip = st.container(horizontal=True, gap="xsmall", key=f"dup_{g.name}_{n}")
            for image_id in group.ids[:12]:
                strip.image(thumb_uri(g.root / image_id), width=72, caption=printable(image_id))
            st.caption(f"{len(group.ids)} images, lowest link cosine {group.min_cosine:.3f}")


def descriptors_size(caches: list[CacheInfo]) -> str:
    n = len(caches)
    return f"{n} embedding{'s' if n != 1 else ''}" if n else "none yet"


def index_folder() -> None:
    """Any folder of this machine becomes a gallery: registered and embedded with the default
    embedding, with a progress bar (``python -m core index --folder PATH --name NAME``)."""
    with st.expander("Index a folder", expanded=not gallery_entries()):
        c = st.columns([3, 2])
        folder = c[0].text_input("Folder of images", key="index_folder", placeholder="/home/me/Pictures")
        name = c[1].text_input("Gallery name", key="index_name", placeholder="photos")
        if st.button("Index", key="index_go", type="primary", icon=":material/add_photo_alternate:",
                     disabled=not (folder.strip() and name.strip())):
            try:
                register_gallery(name.strip(), Path(folder.strip()).expanduser())
            except (GalleryError, OSError) as exc:
                st.error(escape_markdown(str(exc)))
                return
            embed_gallery(name.strip())
            st.rerun()
        st.caption("Embeds the images with the default embedding; indexing it again embeds only what changed.")


def main() -> None:
    st.title("Galleries")
    index_folder()
    entries = gallery_entries()
    if not entries:
        st.info("No gallery yet. Any folder of images becomes one, above or from a terminal:\n\n"
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
            samples = sample_images(g.root)
            if samples:
                strip = st.container(horizontal=True, gap="xsmall", key=f"samples_{g.name}")
                for name in samples:
                    strip.image(thumb_uri(g.root / name), width=72)
            busy = in_progress(g.name)
            if entry.caches:
                st.dataframe(caches_table(g.name, entry.caches), hide_index=True,
                             column_config={"on disk (MB)": st.column_config.NumberColumn(format="%.1f")})
            elif not busy:
                st.caption("No descriptors yet: `python -m core index --name " + g.name + "`")
            duplicates_panel(g, entry.caches)
            deletion(g, descriptors_size(entry.caches))


through_app()
main()

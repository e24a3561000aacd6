"""``train``: fine-tune a backbone and an embedding head on a folder of labelled images."""
from __future__ import annotations

import argparse

from core.cli import options
from core.config import DEFAULT_CONFIG
from core.embed.backbones import list_backbones


def add_parser(sub: argparse._SubParsersAction) -> None:
    from core.train import TrainSettings
    from core.train.losses import LOSSES
    from core.train.trainer import SCHEDULES

    d = TrainSettings()
    p = sub.add_parser("train", help="fine-tune a backbone and an embedding head on a folder of labelled images",
                       description="Transfer learning on ROOT/<class>/<image>: the first stages of the backbone stay "
                                   "frozen (their features are computed once and cached), the top stages, a new "
                                   "embedding head and the loss are trained; early stopping on validation loss; a "
                                   "killed run resumes from its last epoch. Writes artifacts/models/NAME/model.pt "
                                   "(use it with --weights in every command) and model.json.")
    p.add_argument("--root", required=True, help="folder of class subfolders to train on")
    p.add_argument("--name", required=True, help="model name (artifacts/models/NAME/)")
    p.add_argument("--backbone", default=None, choices=list_backbones(), help=f"network to start from (default {d.backbone})")
    p.add_argument("--weights", default=d.weights,
                   help="its starting weights: 'offline' (default), a torchvision/timm weights name, a checkpoint, "
                        "or 'random' (from scratch, e.g. --backbone small_cnn --trainable-stages 99)")
    p.add_argument("--trainable-stages", type=int, default=d.trainable_stages,
                   help=f"top stages of the backbone fine-tuned; 0 trains the head alone, a large value the whole "
                        f"network (default {d.trainable_stages})")
    p.add_argument("--loss", default=d.loss, choices=LOSSES,
                   help=f"softmax (cross-entropy), cosface/arcface (margin on the sphere), triplet (batch-hard); "
                        f"default {d.loss}")
    p.add_argument("--margin", type=float, default=None, help="loss margin (default cosface 0.35, arcface 0.5, triplet 0.1)")
    p.add_argument("--scale", type=float, default=d.scale, help=f"cosface/arcface scale (default {d.scale:g})")
    p.add_argument("--embedding-dim", type=int, default=d.embedding_dim, help=f"head output size (default {d.embedding_dim})")
    p.add_argument("--dropout", type=float, default=d.dropout, help=f"dropout before the head (default {d.dropout:g})")
    p.add_argument("--learn-gem-p", action="store_true",
                   help="learn the head's GeM exponent (default: fixed at 3, so that with no trained stage every "
                        "view is pooled once when it is cached)")
    p.add_argument("--epochs", type=int, default=d.epochs, help=f"most epochs (default {d.epochs})")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help=f"default {d.batch_size}")
    p.add_argument("--lr", type=float, default=d.lr, help=f"learning rate of the head and loss (default {d.lr:g})")
    p.add_argument("--backbone-lr", type=float, default=d.backbone_lr,
                   help=f"learning rate of the trained backbone stages (default {d.backbone_lr:g})")
    p.add_argument("--weight-decay", type=float, default=d.weight_decay, help=f"AdamW weight decay (default {d.weight_decay:g})")
    p.add_argument("--schedule", default=d.schedule, choices=SCHEDULES, help=f"learning-rate schedule (default {d.schedule})")
    p.add_argument("--image-size", type=int, default=d.image_size, help=f"side of the square training views (default {d.image_size})")
    p.add_argument("--views", type=int, default=d.views,
                   help=f"augmented views of each training image (rotation, shifts, shear, zoom, flip, colour), "
                        f"computed once (default {d.views})")
    p.add_argument("--no-augment", action="store_true", help="train on the plain images only")
    p.add_argument("--val-split", type=float, default=d.val_fraction,
                   help=f"share of each class held out for validation and early stopping (default {d.val_fraction:g})")
    p.add_argument("--patience", type=int, default=d.patience,
                   help=f"epochs without a lower validation loss before stopping (default {d.patience})")
    p.add_argument("--seed", type=int, default=d.seed, help="seed of the split, the views and the batches (default 0)")
    p.add_argument("--restart", action="store_true", help="discard the checkpoint of an earlier run of NAME")
    options.add_quiet(p)
    p.set_defaults(run=run)


def run(a: argparse.Namespace) -> int:
    from core.train import TrainSettings, train
    from core.train.data import Augmentation

    settings = TrainSettings(
        backbone=a.backbone or DEFAULT_CONFIG.backbone, weights=a.weights, trainable_stages=a.trainable_stages,
        loss=a.loss, margin=a.margin, scale=a.scale, embedding_dim=a.embedding_dim, dropout=a.dropout,
        learn_gem_p=a.learn_gem_p,
        epochs=a.epochs, batch_size=a.batch_size, lr=a.lr, backbone_lr=a.backbone_lr, weight_decay=a.weight_decay,
        schedule=a.schedule, image_size=a.image_size, views=0 if a.no_augment else a.views,
        augmentation=Augmentation(), val_fraction=a.val_split, patience=a.patience, seed=a.seed)
    result = train(a.root, a.name, settings, progress=not a.quiet, restart=a.restart)
    card, t = result.card, result.card.timing
    best = next((h for h in card.history if h["epoch"] == t.best_epoch), card.history[-1])
    val = f", validation loss {best['val_loss']:.4f}, accuracy {best['val_acc']:.3f}" if best["val_loss"] is not None else ""
    print(f"\n{card.name}: {card.backbone} ({card.data.trainable_stages} of {card.data.stages} stages and a "
          f"{card.head.dim}-d head trained, {settings.loss}) on {card.data.n_train} images of "
          f"{len(card.classes)} classes; best epoch {t.best_epoch} of {t.epochs_run}{val}")
    print(f"  trunk features {t.feature_cache_seconds:.0f} s, epochs {t.epoch_seconds:.0f} s")
    print(f"  use it in any command with: --weights {result.model_path}")
    print(f"  e.g. python -m core evaluate --dataset classes --root {card.data.root} --weights {result.model_path}")
    return 0

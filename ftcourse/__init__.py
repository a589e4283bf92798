"""ftcourse: the helpers of a course on fine-tuning pretrained CNNs in PyTorch (the learner's toolkit).

`import ftcourse` gives the names below, grouped by what you do with them; everything else is in its
module (`ftcourse.bn.convert_sync_batchnorm`, `ftcourse.data.render`, ...). Modules, bottom to top (no
module imports one above it; tests/unit/test_packaging.py checks it):

    inputs, files, runtime, tables, workspace, distributed -> data, models, bn -> groups -> optim ->
    cost, features, grads, audit, compare -> train -> recipes, fastai_style, explore, pretrain, ddp_finetune ->
    autopilot -> plots, check -> widgets -> cli

`ftcourse.lab` is the course's own lab (the multi-seed studies and their results files, the lessons'
claim lines, the DDP workers run by `distributed.launch`, the slide structure): it imports the toolkit,
never the reverse.
"""
from . import (audit, autopilot, bn, compare, cost, data, distributed, explore, fastai_style, features,  # noqa: F401
               files, grads, groups, models, optim, recipes, runtime, tables, train)
from .audit import freeze_audit
from .autopilot import RecipeConfig, run_recipe
from .bn import (BNAffine, adabn, bn_modules, bn_report, bn_to_affine, fold_bn, fold_conv_bn, freeze_bn_stats,
                 unfreeze_bn_stats)
from .compare import paired, paired_table
from .cost import backward_graph_size, forward_ms, step_cost, time_steps
from .data import (IMAGENET_MEAN, IMAGENET_STD, RandomShift, Task, denormalize, far_task, folder_task, image_folder,
                   make_loader, near_task, normalize, shifted_source_task, shifted_test_set, source_task, target_task)
from .fastai_style import fastai_fine_tune
from .features import feature_drift, linear_cka, representation_change
from .grads import GradientRecorder, body_gradient, snapshot, update_ratios
from .groups import (LayerGroups, freeze, freeze_to, layer_groups, params_of, short_group_names, trainable_summary,
                     unfreeze, unit_groups, unit_names)
from .models import (course_backbone, find_head, fresh_model, load_checkpoint, load_pretrained, replace_head,
                     save_checkpoint, split_head, torchvision_backbone)
from .optim import describe_param_groups, even_mults, layerwise_lrs, lrs_for, make_optimizer, param_groups, ulmfit_lrs
from .recipes import DEFAULTS, fine_tune, gradual_unfreeze, linear_probe, lp_ft, surgical_fine_tune, train_from_scratch
from .runtime import get_device, seed_everything
from .tables import Table
from .train import evaluate, fit, precompute_features, predict

__all__ = [
    # set up: the machine, reproducibility, tables
    "seed_everything", "get_device", "Table",
    # data: the course's tasks, your own images, loaders
    "Task", "target_task", "near_task", "far_task", "source_task", "shifted_source_task", "folder_task",
    "image_folder", "make_loader", "normalize", "denormalize", "shifted_test_set", "IMAGENET_MEAN", "IMAGENET_STD",
    "RandomShift",
    # models: the pretrained backbone, torchvision's, heads, checkpoints
    "course_backbone", "load_pretrained", "fresh_model", "torchvision_backbone", "find_head", "replace_head",
    "split_head", "save_checkpoint", "load_checkpoint",
    # layer groups and freezing (parameters and BatchNorm statistics)
    "LayerGroups", "layer_groups", "unit_groups", "unit_names", "short_group_names", "params_of", "freeze",
    "unfreeze", "freeze_to", "trainable_summary",
    # learning rates per group, optimizers
    "lrs_for", "param_groups", "make_optimizer", "even_mults", "layerwise_lrs", "ulmfit_lrs", "describe_param_groups",
    # BatchNorm
    "bn_modules", "freeze_bn_stats", "unfreeze_bn_stats", "BNAffine", "bn_to_affine", "adabn", "fold_bn",
    "fold_conv_bn", "bn_report",
    # measuring: cost, gradients, features, a freeze audit
    "backward_graph_size", "step_cost", "time_steps", "forward_ms", "GradientRecorder", "snapshot", "update_ratios",
    "body_gradient", "feature_drift", "linear_cka", "representation_change", "freeze_audit",
    # training, and comparing two methods over seeds
    "fit", "evaluate", "predict", "precompute_features", "paired", "paired_table",
    # recipes: the baselines, fastai's one call, the course's decisions in one call
    "DEFAULTS", "train_from_scratch", "linear_probe", "fine_tune", "lp_ft", "gradual_unfreeze", "surgical_fine_tune",
    "fastai_fine_tune", "run_recipe", "RecipeConfig",
]

__version__ = "0.1.0"

"""ftcourse: the helpers of a course on fine-tuning pretrained CNNs in PyTorch.

Layers, bottom to top (no module imports one above it):
files, runtime, tables, workspace, slides -> data, models, bn -> groups -> optim -> cost, features, grads,
audit -> train -> recipes, recipe, pretrain, studies, distributed -> plots, check, claims -> widgets -> cli
(`import ftcourse` brings the helpers up to recipes; the others are imported by name, e.g.
`from ftcourse import distributed`.)
"""
from .files import *  # noqa: F401,F403
from .runtime import *  # noqa: F401,F403
from .tables import *  # noqa: F401,F403
from .data import *  # noqa: F401,F403
from .models import *  # noqa: F401,F403
from .bn import *  # noqa: F401,F403
from .groups import *  # noqa: F401,F403
from .optim import *  # noqa: F401,F403
from .cost import *  # noqa: F401,F403
from .features import *  # noqa: F401,F403
from .grads import *  # noqa: F401,F403
from .audit import *  # noqa: F401,F403
from .train import *  # noqa: F401,F403
from .recipes import *  # noqa: F401,F403

__version__ = "0.1.0"

"""The flow classifier: features, labelled data, training, evaluation, bundles and scoring.

``features`` is the one definition of what the model sees, shared by training (``train``),
offline scoring (``furui model score``) and the pipeline's detector (``detector``). Bundles
(``bundle``) tie a fitted model to that definition by its schema hash and fail closed.
"""

from typing import Final

#: The shipped model's name. Here, not in ``bundle``, so that naming it (``furui.model`` on
#: incidents, the default output folder) does not load scikit-learn.
MODEL_NAME: Final = "flow-classifier"

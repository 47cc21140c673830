"""A linear classifier on latent codes (scikit-learn's L2-regularised logistic
regression on standardised features) and leave-one-group-out predictions with it: how
lch asks whether an autoencoder's codes tell high from low metastatic efficiency in cell
lines the classifier never saw. `LinearClassifier` keeps the fitted numbers in the form
the serving graph and calibration.json carry.
"""

import dataclasses

import numpy as np

#: the L2 penalties `choose_l2` tries
L2_GRID = (0.001, 0.01, 0.1, 1.0, 10.0, 100.0)


@dataclasses.dataclass
class LinearClassifier:
    """logit(x) = ((x - mean) / scale) · weights + bias."""

    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray
    bias: float

    def logits(self, features):
        standardised = (np.asarray(features, np.float64) - self.mean) / self.scale
        return standardised @ self.weights + self.bias

    def probabilities(self, features):
        return _sigmoid(self.logits(features))

    @property
    def direction(self):
        """The unit vector in feature space along which the logit grows fastest."""
        gradient = self.weights / self.scale
        return gradient / max(np.linalg.norm(gradient), 1e-12)

    @property
    def logit_per_unit(self):
        """How much the logit grows per unit step along `direction`."""
        return float(np.linalg.norm(self.weights / self.scale))

    def to_dict(self):
        return {"mean": _listed(self.mean), "scale": _listed(self.scale), "weights": _listed(self.weights),
                "bias": float(self.bias)}

    @classmethod
    def from_dict(cls, values):
        return cls(np.asarray(values["mean"], np.float64), np.asarray(values["scale"], np.float64),
                   np.asarray(values["weights"], np.float64), float(values["bias"]))


def fit_logistic(features, labels, l2=1.0, balanced=True, tolerance=1e-10):
    """Logistic regression of binary `labels` on standardised `features`, with an L2
    penalty `l2` on the weights (not the bias): minimises the (class-weighted) sum of
    log losses + l2/2 ||w||², scikit-learn's LogisticRegression with C = 1/l2. Both
    classes must be present.

    `balanced` weighs each class's rows so that both classes count the same. Without
    it, holding one group out shifts the bias towards the other class, and with few
    groups that alone drives leave-one-group-out AUCs below 0.5."""
    from sklearn.linear_model import LogisticRegression

    features = np.asarray(features, np.float64)
    labels = np.asarray(labels, np.float64).reshape(-1)
    if features.ndim != 2 or len(features) != len(labels):
        raise ValueError(f"features {features.shape} and labels {labels.shape} do not pair up")
    if not (0 < labels.sum() < len(labels)):
        raise ValueError("both classes are needed to fit a classifier")
    mean = features.mean(axis=0)
    scale = features.std(axis=0)
    scale = np.where(scale > 1e-12, scale, 1.0)
    model = LogisticRegression(C=1.0 / l2, class_weight="balanced" if balanced else None, solver="newton-cholesky",
                               tol=tolerance, max_iter=200)
    model.fit((features - mean) / scale, labels.astype(int))
    return LinearClassifier(mean, scale, model.coef_[0].astype(np.float64), float(model.intercept_[0]))


def leave_one_group_out(train_features, train_labels, train_groups, test_features, test_groups, l2=1.0):
    """Probabilities for every test row from a classifier fitted on the training rows of
    all other groups. Returns (probabilities, {group: reason}) where a group whose
    remaining training rows lack a class gets NaN and a reason. (scikit-learn's
    LeaveOneGroupOut splits one set; here the held-out rows may come from another split
    than the training rows, as evaluation on the test split needs.)

    `l2` is a penalty, or a function (features, labels, groups) -> penalty called with the
    remaining training rows of each held-out group: nested selection, so that the group
    a classifier is judged on never takes part in choosing its penalty."""
    train_features = np.asarray(train_features, np.float64)
    train_labels = np.asarray(train_labels).reshape(-1)
    train_groups = np.asarray(train_groups)
    test_groups = np.asarray(test_groups)
    probabilities = np.full(len(test_groups), np.nan)
    unscored = {}
    for group in np.unique(test_groups):
        keep = train_groups != group
        labels = train_labels[keep]
        if not (0 < labels.sum() < len(labels)):
            unscored[group.item() if hasattr(group, "item") else group] = "the other groups hold only one class"
            continue
        penalty = l2(train_features[keep], labels, train_groups[keep]) if callable(l2) else l2
        classifier = fit_logistic(train_features[keep], labels, penalty)
        rows = test_groups == group
        probabilities[rows] = classifier.probabilities(np.asarray(test_features, np.float64)[rows])
    return probabilities, unscored


def choose_l2(features, labels, groups, grid=L2_GRID):
    """(the L2 penalty of `grid` whose leave-one-group-out predictions on these rows
    score the best pooled ROC-AUC, {penalty: AUC}): the penalty is chosen without the
    rows it will be judged on. The held-out predictions of every group are pooled before
    scoring: each group (a cell line) holds one class, so a per-fold ROC-AUC, what
    GridSearchCV with LeaveOneGroupOut would average, is not defined."""
    from sklearn.metrics import roc_auc_score

    labels = np.asarray(labels).reshape(-1)
    scores = {}
    for l2 in grid:
        probabilities, _ = leave_one_group_out(features, labels, groups, features, groups, l2)
        scored = np.isfinite(probabilities)
        if len(np.unique(labels[scored])) == 2:
            scores[float(l2)] = float(roc_auc_score(labels[scored], probabilities[scored]))
    if not scores:
        raise ValueError("no group could be held out with both classes left to learn from")
    return max(scores, key=lambda l2: (scores[l2], l2)), scores


def _sigmoid(x):
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(x, np.float64)))


def _listed(array):
    return [round(float(v), 8) for v in np.asarray(array).reshape(-1)]

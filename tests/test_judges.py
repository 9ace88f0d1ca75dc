"""The independent synthetic judges: they work, and they are not the networks the SAN trains against."""

import numpy as np
import pytest
import tf_keras as keras
from sklearn.pipeline import Pipeline

from components.synthetic import drawing as synthetic_drawing
from components.synthetic import people as synthetic_people
from components.faces.imaging import align_face
from pipelines.config import Config, EvaluationConfig
from components.evaluation import judges
from trainer.models import build_face_matcher, build_gender_classifier

SIZE = 64


def _faces(identities: int, per_identity: int, seed: int):
    """Drawn SYNTHETIC faces, aligned as the pipeline aligns them: gray [N,S,S,1], male [N], identity [N]."""
    rng = np.random.default_rng(seed)
    faces, male, identity = [], [], []
    for person in range(identities):
        is_male = bool(person % 2)
        ident = synthetic_people.sample_identity(rng, is_male)
        for _ in range(per_identity):
            image, landmarks = synthetic_drawing.render(ident, synthetic_people.sample_image(rng, ident))
            aligned = align_face(np.asarray(image), tuple(landmarks[0]), tuple(landmarks[1]), SIZE)
            faces.append(aligned.astype(np.float32).mean(axis=-1, keepdims=True) / 255.0)
            male.append(int(is_male))
            identity.append(seed * 1000 + person)
    return np.stack(faces), np.array(male), np.array(identity)


@pytest.fixture(scope="module")
def trained():
    train = _faces(40, 4, seed=1)
    held_out = _faces(12, 4, seed=2)  # identities never seen by the judges
    models = judges.train_synthetic_judges(*train, seed=EvaluationConfig().judge_seed, validation=held_out)
    return models, held_out


def test_synthetic_judges_beat_chance_on_unseen_identities(trained, tmp_path):
    models, (faces, male, identity) = trained
    judges.save_synthetic_judges(models, str(tmp_path))
    loaded = judges.load_synthetic_judges(str(tmp_path))
    gender_judges, matcher_judges = loaded.gender, loaded.matcher
    assert [judge.name for judge in gender_judges] == ["eigenfaces_logistic", "eigenfaces_svm"]
    # The identity-leakage bound reads gender from the Fisherfaces identity embedding alone: it works on
    # unseen identities (gender is a trait of the person), through the matcher's own fitted steps.
    [leakage] = loaded.identity_leakage
    assert leakage.name == "identity_leakage_fisherfaces"
    assert [name for name, _ in leakage.model.steps] == ["pixels", "pca", "lda", "normalize", "classifier"]
    fisher = models["fisherfaces"]
    embedding = leakage.model.named_steps["normalize"].transform(fisher.transform(faces))
    np.testing.assert_allclose(leakage.male_probability(faces),
                               leakage.model.named_steps["classifier"].predict_proba(embedding)[:, 1], atol=1e-5)
    train_faces, train_male, _ = _faces(40, 4, seed=1)
    assert np.mean((leakage.male_probability(train_faces) >= 0.5) == train_male) >= 0.75  # chance: 0.5
    for judge in gender_judges:
        probability = judge.male_probability(faces)
        assert probability.shape == (len(faces),) and ((0 <= probability) & (probability <= 1)).all()
        assert np.mean((probability >= 0.5) == male) >= 0.75, judge.name
    [matcher] = matcher_judges
    embeddings = matcher.embed(faces)
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, rtol=1e-5)
    scores = matcher.similarity(embeddings, embeddings)
    same = identity[:, None] == identity[None, :]
    off_diagonal = ~np.eye(len(faces), dtype=bool)
    assert scores[same & off_diagonal].mean() > scores[~same].mean() + 0.1


def keras_arrays(model: keras.Model) -> list[np.ndarray]:
    return [w for w in model.get_weights() if w.ndim >= 2]


def sklearn_arrays(model: Pipeline) -> list[np.ndarray]:
    """The fitted matrices (ndim >= 2) of every step of a scikit-learn pipeline."""
    arrays = []
    for _, step in model.steps:
        arrays += [value for name, value in vars(step).items()
                   if name.endswith("_") and isinstance(value, np.ndarray) and value.dtype.kind == "f"
                   and value.ndim >= 2]
    return arrays


def assert_not_the_auxiliary_networks(judge_models: dict, auxiliary: list[keras.Model]) -> None:
    """Different family (scikit-learn, no Keras layer), different architecture (no convolution kernel and
    no weight matrix of the same shape as an auxiliary network's), different weights (no equal matrix)."""
    auxiliary_arrays = [array for model in auxiliary for array in keras_arrays(model)]
    assert any(array.ndim == 4 for array in auxiliary_arrays)  # the auxiliary networks are CNNs
    for name, model in judge_models.items():
        assert isinstance(model, Pipeline) and not isinstance(model, keras.Model), name
        assert not any(isinstance(step, keras.layers.Layer) for _, step in model.steps), name
        arrays = sklearn_arrays(model)
        assert arrays, name  # it has fitted parameters to compare
        assert all(array.ndim == 2 for array in arrays), name  # linear maps, no convolution kernels
        assert not {a.shape for a in auxiliary_arrays} & {a.shape for a in arrays}, name
        assert not any(a.shape == b.shape and np.allclose(a, b) for a in arrays for b in auxiliary_arrays), name


def test_judges_are_not_the_training_networks(trained):
    models, _ = trained
    judge_models = {name: model for name, model in models.items() if not name.startswith("_")}
    assert_not_the_auxiliary_networks(judge_models, [build_gender_classifier(SIZE), build_face_matcher(SIZE)])
    families = {type(model.steps[-1][1]).__name__ for model in judge_models.values()}
    assert families == {"LogisticRegression", "SVC", "LinearDiscriminantAnalysis"}


def test_judges_use_their_own_seed_and_never_feed_san_training():
    from pipelines.pipeline import create_components

    config = Config()
    assert config.evaluation.judge_seed != config.training.seed
    components = {component.id: component for component in create_components(config)}
    judge_trainer = components["JudgeTrainer"]
    assert judge_trainer.exec_properties["seed"] == config.evaluation.judge_seed
    judge_channel = judge_trainer.outputs["judges"]
    for node, component in components.items():
        consumers = [key for key, channel in component.inputs.items() if channel is judge_channel]
        assert consumers == (["judges"] if node == "SanitizerEvaluator" else []), node


@pytest.mark.parametrize("names,message", [
    ([], "non-empty selection"),
    (["synthetc"], "synthetic, dlib, onnx_gender"),
    (["dlib"], "include no gender judge: add onnx_gender"),
    (["onnx_gender"], "include no matcher judge: add dlib"),
])
def test_judge_selection_is_checked(names, message):
    """One validation (components/evaluation/config.py), reached by the config itself."""
    from components.evaluation.config import check_judge_names

    with pytest.raises(ValueError, match=message):
        check_judge_names(names)
    if names:  # an empty selection means "the default for the data"
        with pytest.raises(ValueError, match=message):
            EvaluationConfig(judges=tuple(names))


def test_synthetic_judges_refuse_colour_or_odd_sized_faces():
    with pytest.raises(ValueError, match=r"gray square faces \[N,S,S,1\] with S a multiple of 32"):
        judges.pixel_features(np.zeros((2, 64, 64, 3)))
    with pytest.raises(ValueError, match="multiple of 32"):
        judges.pixel_features(np.zeros((2, 48, 48, 1)))


def test_attribute_judges_read_their_attribute_and_survive_save_and_load(trained, tmp_path):
    """The policy's other attributes get the same judge families, named <judge>@<attribute>, with
    their own identity-leakage bound; judges.json lists them and loading gives the same answers."""
    models, held_out = trained
    faces, male, identity = _faces(40, 4, seed=1)
    rng = np.random.default_rng(3)
    young = (rng.random(len(np.unique(identity))) < 0.6)[np.unique(identity, return_inverse=True)[1]].astype(int)
    attribute_models = judges.train_attribute_judges(
        faces, {"Young": young}, models["fisherfaces"], seed=1, validation=(held_out[0], {"Young": held_out[1]}))
    report = attribute_models.pop("_report")
    assert set(attribute_models) == {"eigenfaces_logistic@Young", "eigenfaces_svm@Young",
                                     "identity_leakage_fisherfaces@Young"}
    assert all(0.0 <= value <= 1.0 for value in report.values()) and len(report) == 3
    # trained on the attribute's labels, not the gender's
    assert not np.array_equal(attribute_models["eigenfaces_logistic@Young"].predict(faces),
                              models["eigenfaces_logistic"].predict(faces))
    judges.save_synthetic_judges({**{k: v for k, v in models.items() if k != "_report"}, **attribute_models},
                                 str(tmp_path), attributes={"Young": {
                                     "judges": ["eigenfaces_logistic@Young", "eigenfaces_svm@Young"],
                                     "identity_leakage": ["identity_leakage_fisherfaces@Young"]}})
    loaded = judges.load_synthetic_judges(str(tmp_path))
    assert [judge.name for judge in loaded.attributes["Young"]["judges"]] == ["eigenfaces_logistic@Young",
                                                                             "eigenfaces_svm@Young"]
    assert "reads Young instead of gender" in loaded.attributes["Young"]["judges"][0].description
    np.testing.assert_allclose(loaded.attributes["Young"]["judges"][0].male_probability(held_out[0]),
                               attribute_models["eigenfaces_logistic@Young"].predict_proba(held_out[0])[:, 1],
                               atol=1e-5)  # the judge reads float32 faces
    combined = loaded + judges.JudgeSet()
    assert [j.name for j in combined.attributes["Young"]["identity_leakage"]] == ["identity_leakage_fisherfaces@Young"]
    with pytest.raises(ValueError, match="one value of Smiling only"):
        judges.train_attribute_judges(faces, {"Smiling": np.zeros(len(faces))}, models["fisherfaces"], seed=1)

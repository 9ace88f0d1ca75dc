import pytest

from pipelines import run
from pipelines.config import Config, TrainingConfig


def test_defaults_are_the_laptop_config():
    config = run.config_from_args([])
    assert config == Config()
    assert config.data is None and config.data_root.endswith("synthetic_celeba")


def test_flags_map_onto_the_config_and_unknown_flags_go_to_beam():
    config = run.config_from_args([
        "--data", "gs://bucket/celeba", "--work-dir", "/tmp/w", "--image-size", "96", "--san-epochs", "3",
        "--min-op-gender-error", "0.4", "--synthetic-identities", "50", "--direct_num_workers=2",
    ])
    assert config.data_root == "gs://bucket/celeba"
    assert config.metadata_path == "/tmp/w/metadata.sqlite"
    assert config.training.image_size == 96 and config.training.san_epochs == 3
    assert config.training.batch_size == Config().training.batch_size
    assert config.gate.min_op_gender_error == 0.4
    assert config.synthetic.identities == 50
    assert config.beam_pipeline_args == ["--direct_num_workers=2"]


def test_production_takes_the_paper_values_unless_overridden():
    config = run.config_from_args(["--production", "--san-epochs", "5"])
    assert (config.training.image_size, config.training.batch_size, config.training.classifier_epochs) == (224, 8, 20)
    assert config.training.san_epochs == 5
    assert config.gate == Config.production().gate and config.gate.max_tmr_drop_op < Config().gate.max_tmr_drop_op
    assert run.config_from_args(["--production", "--max-tmr-drop-op", "0.3"]).gate.max_tmr_drop_op == 0.3


def test_architecture_flag_selects_the_paper_san_with_its_laptop_schedule():
    default = run.config_from_args([])
    assert default.training.architecture == "residual" and default.training.san_epochs == 6
    paper = run.config_from_args(["--architecture", "paper"])
    assert paper.training.architecture == "paper"
    assert (paper.training.pretrain_epochs, paper.training.san_epochs, paper.training.reconstruction_loss_weight,
            paper.training.matcher_loss_weight, paper.training.matcher_start_epoch) == (1, 3, 10.0, 8.0, 1)
    assert run.config_from_args(["--architecture", "paper", "--san-epochs", "7"]).training.san_epochs == 7
    production = run.config_from_args(["--production", "--architecture", "paper"])
    assert production.training.architecture == "paper" and production.training.san_epochs == 20
    assert production.gate.max_adaptive_gap is None and default.gate.max_adaptive_gap == 0.04
    with pytest.raises(SystemExit):
        run.config_from_args(["--architecture", "flowsan"])
    with pytest.raises(ValueError, match="unknown sanitizer architecture 'flowsan'"):
        TrainingConfig(architecture="flowsan")


def test_image_size_must_suit_the_classifier():
    with pytest.raises(SystemExit, match="multiple of 32"):
        run.config_from_args(["--image-size", "100"])


def test_help_documents_every_flag(capsys):
    with pytest.raises(SystemExit):
        run.config_from_args(["--help"])
    text = capsys.readouterr().out
    for flag in ("--runner", "--data", "--work-dir", "--production", "--image-size", "--batch-size",
                 "--classifier-epochs", "--pretrain-epochs", "--san-epochs", "--min-op-gender-error",
                 "--max-tmr-drop-sm", "--max-tmr-drop-op", "--min-ssim-op", "--judges", "--judge-seed",
                 "--synthetic-identities", "--architecture", "--max-adaptive-gap"):
        assert flag in text


def test_gate_and_judge_flags_map_onto_the_config():
    config = run.config_from_args(["--max-tmr-drop-sm", "0.05", "--max-tmr-drop-op", "0.15", "--min-ssim-op", "0.6",
                                   "--max-sm-gender-error", "0.2", "--judges", "synthetic,dlib", "--judge-seed", "9"])
    assert (config.gate.max_tmr_drop_sm, config.gate.max_tmr_drop_op, config.gate.min_ssim_op) == (0.05, 0.15, 0.6)
    assert config.gate.max_sm_gender_error == 0.2
    assert config.gate.min_op_gender_error == Config().gate.min_op_gender_error
    assert config.evaluation.judges == ("synthetic", "dlib") and config.evaluation.judge_seed == 9


def test_default_judges_follow_the_data():
    assert run.config_from_args([]).evaluation.judges_for(synthetic_data=True) == ("synthetic",)
    assert run.config_from_args(["--data", "/d"]).evaluation.judges_for(synthetic_data=False) == ("dlib", "onnx_gender")


def test_a_wrong_judge_name_is_refused_with_the_choices():
    with pytest.raises(SystemExit, match="--judges: .*synthetic, dlib, onnx_gender"):
        run.config_from_args(["--judges", "commercial"])


def test_constant_targets_come_from_the_command_line_and_are_checked_against_the_policy():
    config = run.config_from_args(["--policy", "gender-age", "--constant-targets", "Young:0"])
    assert config.training.constant_targets == ("Young:0",)
    assert run.config_from_args([]).training.constant_targets == ()
    with pytest.raises(SystemExit, match="--constant-targets: .*Young is not an attribute the policy 'gender'"):
        run.config_from_args(["--constant-targets", "Young:0"])
    with pytest.raises(SystemExit, match="--constant-targets: .*write Attribute:0 or Attribute:1"):
        run.config_from_args(["--policy", "gender-age", "--constant-targets", "Young=old"])


def test_the_fine_residual_editor_is_a_training_flag():
    assert run.config_from_args(["--residual-fine"]).training.residual_fine is True
    assert run.config_from_args([]).training.residual_fine is False


def test_the_residual_options_are_refused_for_the_paper_san_before_anything_runs():
    with pytest.raises(SystemExit, match="need the residual sanitizer, not --architecture paper"):
        run.config_from_args(["--architecture", "paper", "--residual-fine"])
    with pytest.raises(SystemExit, match="need the residual sanitizer, not --architecture paper"):
        run.config_from_args(["--architecture", "paper", "--constant-targets", "Male:1"])


def test_identity_replacement_flags_map_onto_the_config():
    training = run.config_from_args(["--policy", "deidentify"]).training
    assert training.identity_replacement == "ksame" and training.replacement_editor is False
    assert training.replacement_arguments()["group_attributes"] == ("Smiling", "Eyeglasses", "Male", "Young")
    training = run.config_from_args(["--policy", "deidentify", "--identity-replacement", "none"]).training
    assert training.identity_replacement == "none" and training.replacement_arguments() is None
    assert run.config_from_args(["--policy", "deidentify", "--replacement-editor"]).training.replacement_editor is True
    with pytest.raises(SystemExit):
        run.config_from_args(["--identity-replacement", "swap"])

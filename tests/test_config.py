"""params.yaml validation: sizes, YAML 1.2 numbers, and one-line errors naming the key."""

from pathlib import Path

import pytest
import yaml

from slimnet.config import Params, load_params, parse_size
from slimnet.console.errors import SlimnetError

REPO = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(text)
    return path


def load_error(tmp_path: Path, text: str) -> str:
    with pytest.raises(SlimnetError) as error:
        load_params(write(tmp_path, text))
    message = str(error.value)
    assert message and "\n" not in message
    return message


@pytest.mark.parametrize(
    "written, expected",
    [
        ("200M", 200_000_000),
        ("1.5G", 1_500_000_000),
        ("300e6", 300_000_000),
        ("'300e6'", 300_000_000),
        ("200000000", 200_000_000),
        ("'200M'", 200_000_000),
        ("8M", 8_000_000),
        ("300K", 300_000),
    ],
)
def test_flops_sizes(tmp_path, written, expected):
    params = load_params(write(tmp_path, f"search:\n  flops: {written}\n  params: 2.5M\n"))
    assert params.search.flops == expected
    assert isinstance(params.search.flops, int)
    assert params.search.params == 2_500_000


def test_parse_size_directly():
    assert parse_size("1.5g") == 1_500_000_000
    assert parse_size(" 12 k ") == 12_000
    assert parse_size(3e8) == 300_000_000
    assert parse_size(".5M") == 500_000
    for bad in ("2O0M", "200MB", "M", "", "-5M", 0, -1, True, "1e6G6"):
        with pytest.raises(ValueError):
            parse_size(bad)


def test_scientific_notation_is_a_float(tmp_path):
    params = load_params(write(tmp_path, "supernet:\n  weight_decay: 1e-4\n  lr: 5e-2\ntrain:\n  weight_decay: 4.0e-5\n"))
    assert isinstance(params.supernet.weight_decay, float)
    assert params.supernet.weight_decay == pytest.approx(1e-4)
    assert params.supernet.lr == pytest.approx(0.05)
    assert params.train.weight_decay == pytest.approx(4e-5)


def test_defaults_fill_missing_sections_and_keys(tmp_path):
    params = load_params(write(tmp_path, "model:\n  arch: resnet18\n"))
    assert isinstance(params, Params)
    assert params.model.arch == "resnet18"
    assert params.model.width == Params().model.width
    assert params.supernet == Params().supernet
    assert params.search.flops == Params().search.flops


# Model fields params.yaml leaves out on purpose: data.skip_invalid (image folders only: a data-stage
# param that would rerun it) and train.seed (replaced by train.seeds; setting it is an error).
NOT_IN_PARAMS_YAML = {("data", "skip_invalid"), ("train", "seed")}


def test_params_yaml_is_the_models_defaults():
    # One source for defaults: a file (a preset, a test's params) that leaves a key out gets what
    # params.yaml documents, so each section model's default equals params.yaml's value.
    import yaml

    written = yaml.safe_load((REPO / "params.yaml").read_text())
    loaded, defaults = load_params(REPO / "params.yaml"), Params()
    assert set(written) == set(Params.model_fields)
    differ = []
    for section, values in written.items():
        model = type(getattr(defaults, section))
        assert set(values) == set(model.model_fields) - {k for s, k in NOT_IN_PARAMS_YAML if s == section}, section
        for key in values:
            default = model.model_fields[key].get_default(call_default_factory=True)
            if getattr(loaded, section).model_dump()[key] != default:
                differ.append(f"{section}.{key}: params.yaml {getattr(getattr(loaded, section), key)!r}, model {default!r}")
    assert not differ, differ
    assert loaded == defaults


def test_a_file_that_leaves_everything_out_is_params_yaml(tmp_path):
    assert load_params(write(tmp_path, "# every key left out\n")) == load_params(REPO / "params.yaml")


def test_repository_params_file_is_valid():
    path = REPO / "params.yaml"
    if not path.is_file():
        pytest.skip("no params.yaml at the repository root")
    params = load_params(path)
    assert params.supernet.min_width < params.supernet.max_width
    assert params.search.flops is not None or params.search.params is not None


def test_unknown_key(tmp_path):
    message = load_error(tmp_path, "supernet:\n  epochs: 2\n  learning_rate: 0.1\n")
    assert "supernet.learning_rate" in message and "unknown key" in message
    message = load_error(tmp_path, "superent:\n  epochs: 2\n")
    assert "superent" in message


def test_wrong_type(tmp_path):
    message = load_error(tmp_path, "supernet:\n  epochs: three\n")
    assert "supernet.epochs" in message and "three" in message
    message = load_error(tmp_path, "model:\n  cifar: maybe\n")
    assert "model.cifar" in message
    message = load_error(tmp_path, "model:\n  arch: vgg16\n")
    assert "model.arch" in message and "vgg16" in message


def test_bad_size(tmp_path):
    message = load_error(tmp_path, "search:\n  flops: 2O0M\n")
    assert "search.flops" in message and "2O0M" in message
    message = load_error(tmp_path, "search:\n  params: -3M\n")
    assert "search.params" in message


def test_negative_epochs(tmp_path):
    message = load_error(tmp_path, "train:\n  epochs: -2\n")
    assert "train.epochs" in message and "-2" in message
    message = load_error(tmp_path, "supernet:\n  epochs: 0\n")
    assert "supernet.epochs" in message


@pytest.mark.parametrize("low, high", [(1.5, 1.5), (1.2, 0.8)])
def test_width_range_must_be_ordered(tmp_path, low, high):
    message = load_error(tmp_path, f"supernet:\n  min_width: {low}\n  max_width: {high}\n")
    assert "supernet" in message and "min_width" in message and "max_width" in message


def test_other_cross_field_checks(tmp_path):
    message = load_error(tmp_path, "train:\n  epochs: 2\n  warmup_epochs: 2\n")
    assert "train" in message and "warmup_epochs" in message
    message = load_error(tmp_path, "search:\n  flops: null\n  params: null\n")
    assert "search" in message and "target" in message


def test_missing_file(tmp_path):
    path = tmp_path / "nowhere" / "params.yaml"
    with pytest.raises(SlimnetError) as error:
        load_params(path)
    message = str(error.value)
    assert str(path) in message and "not found" in message and "\n" not in message


def test_not_yaml_or_not_a_mapping(tmp_path):
    assert "not valid YAML" in load_error(tmp_path, "search: [\n  flops: 2\n")
    assert "mapping" in load_error(tmp_path, "- search\n- model\n")


@pytest.mark.parametrize(
    "data, key, shown",
    [
        ("source: imagefolder", "data.resolution", "required for source imagefolder"),
        ("source: imagenet", "data.source", "imagenet"),
        ("val_fraction: 1.0", "data.val_fraction", "1.0"),
        ("fraction: 0", "data.fraction", "0"),
        ("fraction: .nan", "data.fraction", "nan"),
        ("resolution: 0", "data.resolution", "0"),
        ("skip_invalid: maybe", "data.skip_invalid", "maybe"),
        ("seed: 1.5", "data.seed", "1.5"),
    ],
)
def test_data_params_are_checked_here_once(tmp_path, data, key, shown):
    # The library (slimnet.datasets) takes these as typed values and does not check them again.
    message = load_error(tmp_path, f"data:\n  {data}\n")
    assert message.startswith(f"{tmp_path / 'params.yaml'}: {key}: ") and shown in message


@pytest.mark.parametrize(
    "text", ["transfer:\n  data_fraction: 0\n", "transfer:\n  data_fraction: 1.5\n", "transfer:\n  resolution: -4\n"]
)
def test_projection_params_are_checked_here_once(tmp_path, text):
    assert "transfer." in load_error(tmp_path, text)


def test_image_folder_params(tmp_path):
    params = load_params(
        write(tmp_path, "data:\n  source: imagefolder\n  root: /data/imagenet\n  resolution: 224\n  skip_invalid: true\n")
    )
    assert params.data.resolution == 224 and params.data.skip_invalid is True
    assert load_params(write(tmp_path, "data:\n  source: cifar10\n")).data.skip_invalid is False


def test_every_preset_is_a_valid_params_file():
    presets = sorted((Path(__file__).resolve().parents[1] / "presets").glob("*.yaml"))
    assert len(presets) >= 4
    for preset in presets:
        load_params(preset)  # raises SlimnetError naming the key on any problem


def test_every_preset_sets_every_key_a_stage_tracks():
    """`cp presets/X.yaml params.yaml && dvc repro`: DVC stops at a stage whose tracked key the file
    lacks (the defaults of the models do not help it), so a preset names every one."""
    root = Path(__file__).resolve().parents[1]
    stages = yaml.safe_load((root / "dvc.yaml").read_text())["stages"].values()
    tracked = {key for stage in stages for key in stage.get("params") or [] if isinstance(key, str)}

    def has(section: object, key: str) -> bool:
        for part in key.split("."):
            if not isinstance(section, dict) or part not in section:
                return False
            section = section[part]
        return True

    for preset in sorted((root / "presets").glob("*.yaml")):
        values = yaml.safe_load(preset.read_text())
        assert [key for key in sorted(tracked) if not has(values, key)] == [], preset.name


@pytest.mark.parametrize(
    "text, shown",
    [
        ("slimmable:\n  targets: [6M]\n", "two or more"),
        ("slimmable:\n  targets: [6M, 6000000]\n", "must differ"),
        ("slimmable:\n  targets: [6M, 4O0K]\n", "4O0K"),
        ("slimmable:\n  targets: 6M\n", "slimmable.targets"),
        ("slimmable:\n  distill: sometimes\n", "slimmable.distill"),
        ("train:\n  schedule: steps\n", "train.schedule"),
        ("slimmable:\n  epochs: 0\n", "slimmable.epochs"),
        ("train:\n  epochs: 4\n  warmup_epochs: 1\nslimmable:\n  epochs: 1\n", "slimmable.epochs (1) must be above"),
    ],
)
def test_slimmable_and_schedule_params_fail_in_one_line(tmp_path, text, shown):
    message = load_error(tmp_path, text)
    assert "slimmable" in message or "schedule" in message
    assert shown in message


def test_slimmable_targets_are_sizes_widest_first(tmp_path):
    params = load_params(write(tmp_path, "slimmable:\n  targets: [4M, 8M, 6.5M]\n"))
    assert params.slimmable.targets == [8_000_000, 6_500_000, 4_000_000]
    assert Params().slimmable.targets == []  # off by default
    assert params.slimmable_recipe() == params.train  # same recipe unless slimmable.epochs is set
    shorter = load_params(write(tmp_path, "train:\n  epochs: 5\nslimmable:\n  epochs: 2\n"))
    assert shorter.slimmable_recipe().epochs == 2 and shorter.slimmable_recipe().lr == shorter.train.lr


def test_slimmable_command_with_bad_targets_exits_2_and_writes_nothing(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from slimnet.cli import app

    monkeypatch.chdir(tmp_path)
    write(tmp_path, "slimmable:\n  targets: [6M]\n")
    result = CliRunner().invoke(app, ["slimmable"])
    assert result.exit_code == 2 and "slimmable.targets" in result.stderr
    assert not (tmp_path / "stages").exists()


@pytest.mark.parametrize(
    "written, ms", [("5ms", 5.0), ("500us", 0.5), ("0.005s", 5.0), ("2.5", 2.5), ("'7 ms'", 7.0), ("1e1ms", 10.0)]
)
def test_latency_targets(tmp_path, written, ms):
    # A latency target alone: search.flops defaults to params.yaml's 6M, so it is set to null.
    params = load_params(write(tmp_path, f"search:\n  flops: null\n  latency: {written}\n"))
    assert params.search.latency == pytest.approx(ms) and params.search.flops is None


@pytest.mark.parametrize(
    "written, size", [("4MB", 4_000_000), ("3.5MiB", 3_670_016), ("4M", 4_000_000), ("512KiB", 524_288), ("2000000", 2_000_000)]
)
def test_memory_targets(tmp_path, written, size):
    assert load_params(write(tmp_path, f"search:\n  memory: {written}\n")).search.memory == size


@pytest.mark.parametrize(
    "text, key",
    [
        ("search:\n  latency: 5 sec\n", "search.latency: must be a duration like 5ms"),
        ("search:\n  latency: -2ms\n", "search.latency: must be a duration"),
        ("search:\n  latency: 0\n", "search.latency: must be a duration"),
        ("search:\n  memory: 4XB\n", "search.memory: must be a memory size like 4MB"),
        ("search:\n  memory: 0MiB\n", "search.memory: must be a memory size"),
        ("search:\n  flops: null\n  latency: null\n", "search: set a target"),
        ("latency:\n  device: tpu\n", "latency.device"),
        ("latency:\n  repeats: 0\n", "latency.repeats"),
        ("latency:\n  thread: 2\n", "latency.thread: unknown key"),
    ],
)
def test_bad_budget_keys_are_one_line_naming_the_key(tmp_path, text, key):
    assert f"params.yaml: {key}" in load_error(tmp_path, text)


@pytest.mark.parametrize(
    "train, shown",
    [
        ("seed: 1", "train.seeds, a list"),
        ("seeds: []", "train.seeds"),
        ("seeds: [0, 0]", "distinct"),
        ("seeds: [0, -1]", "train.seeds.1: Input should be greater than or equal to 0"),
        ("variants: [optimized]", "optimized and uniform"),
        ("variants: [optimized, uniform, best]", "train.variants"),
    ],
)
def test_seeds_and_variants_are_checked(tmp_path, train, shown):
    message = load_error(tmp_path, f"search:\n  flops: 6M\ntrain:\n  {train}\n")
    assert "train" in message and shown in message, message


@pytest.mark.parametrize("section", ["data", "search", "supernet"])
@pytest.mark.parametrize(
    "seed, shown", [(-1, "greater than or equal to 0"), (2**32, "less than or equal to 4294967295"), (2**32 - 1, None)]
)
def test_seeds_are_unsigned_32_bit(tmp_path, section, seed, shown):
    """A seed names stages and networks, and torch takes it unsigned: -1 would wrap around silently."""
    line = f"  seed: {seed}\n"
    text = f"search:\n  flops: 6M\n{line}" if section == "search" else f"search:\n  flops: 6M\n{section}:\n{line}"
    if shown is None:
        assert getattr(load_params(write(tmp_path, text)), section).seed == seed
    else:
        assert f"params.yaml: {section}.seed: Input should be {shown}" in load_error(tmp_path, text)


@pytest.mark.parametrize(
    "extrapolate, shown",
    [
        ("random_seed: 0", "extrapolate: random_seed is replaced by random_draws, a list of draw seeds"),
        ("random_draws: []", "extrapolate.random_draws: give at least one draw seed"),
        ("random_draws: [0, 1, 0]", "extrapolate.random_draws: draw seeds must be distinct"),
        ("random_draws: 3", "extrapolate.random_draws"),
        ("random_draws: [a]", "extrapolate.random_draws.0"),
        ("random_draws: [-1]", "extrapolate.random_draws.0: Input should be greater than or equal to 0"),
    ],
)
def test_random_draws_are_checked(tmp_path, extrapolate, shown):
    assert shown in load_error(tmp_path, f"search:\n  flops: 6M\nextrapolate:\n  {extrapolate}\n")


def test_random_draws_default_to_five_as_params_yaml_sets_them(tmp_path):
    assert Params().extrapolate.random_draws == [0, 1, 2, 3, 4]
    assert load_params(REPO / "params.yaml").extrapolate == Params().extrapolate
    assert load_params(
        write(tmp_path, "search:\n  flops: 6M\nextrapolate:\n  random_draws: [7, 3]\n")
    ).extrapolate.random_draws == [7, 3]


def test_each_seed_is_the_recipe_with_that_seed(tmp_path):
    params = load_params(write(tmp_path, "search:\n  flops: 6M\ntrain:\n  seeds: [3, 5]\n  epochs: 4\n"))
    recipe = params.train.with_seed(5)
    assert recipe.seed == 5 and recipe.epochs == 4 and params.train.variants == ["optimized", "uniform"]


def test_every_training_stage_reads_the_whole_recipe_but_not_the_seed_lists():
    # The recipe keys are listed one by one in dvc.yaml so that a new seed reruns only new trainings;
    # a recipe field missing from that list would leave trained networks stale.
    import yaml

    from slimnet.training.recipe import Recipe

    stage = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]["train"]
    assert sorted(stage["params"]) == sorted(f"train.{name}" for name in Recipe.model_fields if name != "seed")

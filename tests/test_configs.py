"""ExplainConfig and CompareConfig: every field checked in one declarative place, a bad value
a one-line ParameterError that names the field (dbksvd.validation.parameter_error)."""

import dataclasses

import pytest

from dbksvd.analysis.compare import CompareConfig
from dbksvd.analysis.explain import ExplainConfig
from dbksvd.errors import ParameterError


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: ExplainConfig(top=True), "ExplainConfig.top must be an integer >= 1; got True"),
        (lambda: ExplainConfig(min_items=0), "ExplainConfig.min_items must be >= 1; got 0"),
        (lambda: ExplainConfig(score_top=2.0), "ExplainConfig.score_top must be an integer >= 1; got 2.0"),
        (lambda: ExplainConfig(test_fraction=1), "ExplainConfig.test_fraction must be in (0, 1); got 1"),
        (lambda: ExplainConfig(select_fraction=True), "ExplainConfig.select_fraction must be a number in (0, 1)"),
        (lambda: ExplainConfig(random_state=-1), "ExplainConfig.random_state must be >= 0; got -1"),
        (lambda: ExplainConfig(baseline=1), "ExplainConfig.baseline must be true or false; got 1"),
        (lambda: ExplainConfig(coder="lasso"), "ExplainConfig.coder: unknown coder 'lasso'"),
        (lambda: ExplainConfig(bridge="pca"), "ExplainConfig.bridge: unknown bridge 'pca'"),
        (lambda: ExplainConfig(vocabularies=()), "ExplainConfig.vocabularies must be a non-empty tuple of strings"),
        (lambda: ExplainConfig(vocabularies=("captions", 3)), "ExplainConfig.vocabularies[1] must be a string; got 3"),
        (lambda: ExplainConfig(select_fraction=0.5, test_fraction=0.5), "leave items to describe"),
        (lambda: ExplainConfig(topp=3), "ExplainConfig has no field 'topp'"),
        (lambda: CompareConfig(n_nonzero=(4,)), "CompareConfig.n_atoms is required"),
        (
            lambda: CompareConfig(n_atoms=True, n_nonzero=(1,)),
            "CompareConfig.n_atoms must be an integer >= 1; got True",
        ),
        (
            lambda: CompareConfig(n_atoms=8, n_nonzero=()),
            "CompareConfig.n_nonzero must be a non-empty tuple of integers >= 1",
        ),
        (lambda: CompareConfig(n_atoms=8, n_nonzero=(2, 0)), "CompareConfig.n_nonzero[1] must be >= 1; got 0"),
        (lambda: CompareConfig(n_atoms=8, n_nonzero=(9,)), "k=9 (n_nonzero) must be at most K=8"),
        (lambda: CompareConfig(n_atoms=8, n_nonzero=(2,), methods=("dbksvd", "pca")), "unknown method 'pca'"),
        (
            lambda: CompareConfig(n_atoms=8, n_nonzero=(2,), methods=()),
            "CompareConfig.methods must be a non-empty tuple",
        ),
        (lambda: CompareConfig(n_atoms=8, n_nonzero=(2,), pursuit="no"), "CompareConfig.pursuit must be true or false"),
        (
            lambda: CompareConfig(n_atoms=8, n_nonzero=(2,), preprocessing="whiten"),
            "preprocessing 'whiten' is not valid",
        ),
    ],
)
def test_a_bad_field_is_one_line_naming_it(make, message):
    with pytest.raises(ParameterError) as info:
        make()
    text = str(info.value)
    assert message in text and "\n" not in text, text


def test_k_equal_to_the_dictionary_size_is_allowed_as_dbksvd_allows_it():
    cfg = CompareConfig(n_atoms=8, n_nonzero=[2, 8], methods=["dbksvd"])  # lists are taken as tuples
    assert cfg.n_nonzero == (2, 8) and cfg.methods == ("dbksvd",)
    with pytest.raises(ParameterError, match="at most d=4"):
        cfg.validate(100, 4)
    cfg.validate(100, 8)


def test_assignment_and_replace_are_checked_too():
    cfg = ExplainConfig()
    with pytest.raises(ParameterError, match="ExplainConfig.top must be an integer >= 1; got True"):
        cfg.top = True
    assert cfg.top == 20
    cfg.top = 5
    assert dataclasses.replace(cfg, coder="threshold").coder == "threshold" and cfg.top == 5
    with pytest.raises(ParameterError, match="unknown coder"):
        dataclasses.replace(cfg, coder="lasso")
    assert dataclasses.asdict(CompareConfig(n_atoms=4, n_nonzero=(2,)))["n_nonzero"] == (2,)


def test_every_field_has_a_docstring_the_cli_can_show():
    for cls in (ExplainConfig, CompareConfig):
        for name, field in cls.__pydantic_fields__.items():
            assert field.description and len(field.description) > 10, (cls.__name__, name)


def test_tyro_builds_a_command_line_from_the_configs(capsys):
    import tyro

    cfg = tyro.cli(ExplainConfig, args=["--top", "5", "--coder", "threshold", "--vocab", "captions", "imagenet"])
    assert cfg == ExplainConfig(top=5, coder="threshold", vocabularies=("captions", "imagenet"))
    assert tyro.cli(ExplainConfig, args=["--vocabularies", "captions,imagenet", "--coder", "own"]) == ExplainConfig(
        vocabularies=("captions", "imagenet")
    )
    assert tyro.cli(CompareConfig, args=["--atoms", "32", "--nnz", "4", "32"]).n_nonzero == (4, 32)
    assert tyro.cli(CompareConfig, args=["--n-atoms", "32", "--n-nonzero", "4,32", "--seed", "3"]) == CompareConfig(
        n_atoms=32, n_nonzero=(4, 32), random_state=3
    )
    with pytest.raises(SystemExit):
        tyro.cli(ExplainConfig, args=["--help"])
    assert "Top-activating items kept per atom and side" in capsys.readouterr().out


def test_old_field_names_still_work_for_a_release():
    with pytest.warns(DeprecationWarning) as record:
        cfg = CompareConfig(atoms=8, nnz=(2,), seed=3, dbksvd_iters=5, sae_epochs=7)
    assert "CompareConfig(atoms=...) is now n_atoms=..." in {str(w.message) for w in record} and len(record) == 5
    assert cfg == CompareConfig(n_atoms=8, n_nonzero=(2,), random_state=3, dbksvd_max_iter=5, sae_max_epochs=7)
    assert (cfg.atoms, cfg.nnz, cfg.seed) == (8, (2,), 3)
    with pytest.warns(DeprecationWarning):
        assert ExplainConfig(seed=4).random_state == 4
    with pytest.raises(ParameterError, match="not both"), pytest.warns(DeprecationWarning):
        CompareConfig(atoms=8, n_atoms=8, n_nonzero=(2,))

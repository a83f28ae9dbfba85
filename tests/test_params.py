"""The checkers of params.yaml's sections: study and sem_study."""

from __future__ import annotations

import pytest

from pipeline.errors import ConfigError
from pipeline.params.sem import sem_settings
from pipeline.params.study import study_settings
from pipeline.sem.estimators import IRM_REGS


@pytest.mark.parametrize("section, needle", [
    ({"datasets": ["colored_mnsit"]}, "colored_mnsit.*colored_mnist"),
    ({"methods": ["irmv2"]}, "irmv2"),
    ({"presets": ["irm_papr"]}, "irm_papr"),
    ({"dataset": ["sem"]}, "dataset"),
    ({"methods": "irm"}, "study.methods"),
])
def test_bad_study_names_the_key_and_the_choices(section, needle):
    with pytest.raises(ConfigError, match=needle):
        study_settings(section)


def test_settings_from_params_yaml():
    assert sem_settings(None) == {"methods": ["erm", "icp", "irm"], "irm_iterations": 100000,
                                  "irm_lr": 1e-3, "irm_regs": list(IRM_REGS), "icp_alpha": 0.05}
    settings = sem_settings({"irm_iterations": 1.0e4, "irm_regs": [0, "1e-2"]})
    assert settings["irm_iterations"] == 10000 and isinstance(settings["irm_iterations"], int)
    assert settings["irm_regs"] == [0.0, 0.01]
    with pytest.raises(ConfigError, match="did you mean 'irm_lr'"):
        sem_settings({"irm_lrs": 0.1})
    with pytest.raises(ConfigError, match="methods = 'erm' must be a list"):
        sem_settings({"methods": "erm"})


def test_make_envs_section_names_a_bad_dataset_parameter_or_seed():
    from pipeline.params.make_envs import make_envs_settings

    settings = make_envs_settings({"seed": 3, "datasets": {"sem": {"reps": 2}}})
    assert settings.seed == 3 and settings.datasets == {"sem": {"reps": 2}}
    with pytest.raises(ConfigError, match="colored_mnsit.*did you mean 'colored_mnist'"):
        make_envs_settings({"datasets": {"colored_mnsit": {}}})
    with pytest.raises(ConfigError, match="n_trian"):
        make_envs_settings({"datasets": {"colored_fashion_mnist": {"n_trian": 10}}})
    with pytest.raises(ConfigError, match="make_envs.seed = -1 is out of range"):
        make_envs_settings({"seed": -1})
    with pytest.raises(ConfigError, match="key in params.yaml 'make_envs'"):
        make_envs_settings({"seeds": 0})

"""The per-object reference the SPS tests compare the batched kernel with.

Not a test module: imported by ``test_sps_*.py`` (pytest puts this folder
on ``sys.path``).
"""

import numpy as np


def specmodel_photometry(model, draws, filters, sps):
    """(N, B) maggies from Prospector's ``SpecModel.predict``, one object at a time.

    ``draws`` holds an (N,) array per free parameter of ``model`` and
    ``zred`` (set as the model's fixed redshift for each object).
    """
    obs = dict(filters=filters, wavelength=None, spectrum=None)
    out = []
    for i in range(len(draws["zred"])):
        model.params["zred"] = np.atleast_1d(draws["zred"][i])
        theta = np.array([draws[k][i] for k in model.theta_labels()])
        out.append(model.predict(theta, obs=obs, sps=sps)[1])
    return np.array(out)

import pytest
from resnext_deploy.zoo import register_model
from tests.support.tiny import TINY_SPEC

@pytest.fixture(scope="session")
def tiny_spec():
    register_model(TINY_SPEC)
    return TINY_SPEC

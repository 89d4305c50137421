import pytest_twisted


@pytest_twisted.ensureDeferred
async def test_base_endpoint_answers_with_api_version(server):
    response = await server.request("GET", "/v2/")
    assert response.code == 200
    assert response.headers.getRawHeaders("Docker-Distribution-API-Version") == ["registry/2.0"]
    assert await response.json() == {}


def test_process_serves_base_endpoint(registry):
    import urllib.request

    with urllib.request.urlopen(registry.url + "/v2/") as response:
        assert response.status == 200

"""The twistd plugin: `twistd ocireg` names the service maker, nothing more.

Kept cheap to import, since twistd imports every plugin to list them.
"""

from twisted.application.service import ServiceMaker

ocireg = ServiceMaker(
    "ocireg",
    "ocireg.tap",
    "A container registry where every push is a new repository version.",
    "ocireg",
)

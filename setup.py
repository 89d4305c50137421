from setuptools import find_packages, setup

setup(
    name="ocireg",
    version="0.1.0",
    description="A container registry daemon where every push is a new repository version",
    long_description=open("README.rst", encoding="utf-8").read(),
    long_description_content_type="text/x-rst",
    python_requires=">=3.11",
    packages=find_packages(include=["ocireg", "ocireg.*"]) + ["twisted.plugins"],
    package_data={"ocireg.db": ["schema/*/*.sql"]},
    install_requires=[
        "Twisted>=24.10",
        "klein>=24.8",
        "treq>=24.9",
        "attrs>=23.1",
        "zope.interface>=6.0",
        "txpostgres>=1.7",
        "psycopg2-binary>=2.9",
        "prometheus-client>=0.17",
        # Authentication: htpasswd bcrypt hashes, and the registry's signed tokens.
        "bcrypt>=4.0",
        "PyJWT[crypto]>=2.8",
    ],
    extras_require={
        "test": [
            "pytest>=8",
            "pytest-twisted>=1.14",
            "hypothesis>=6",
            "ruff>=0.6",
            "schemathesis>=4.0",
        ],
    },
    entry_points={"console_scripts": ["ocireg = ocireg.cli:main"]},
)

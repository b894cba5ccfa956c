# newswatch image: the official Airflow image plus our pinned requirements and the newswatch package.
# Build: docker compose build   (or: docker build -t newswatch-airflow:latest .)
FROM apache/airflow:3.3.2-python3.11

# The base image's default user; pip installs must run as it (never as root).
USER airflow
WORKDIR /opt/airflow

# 1. Third-party dependencies: rebuilt only when the lock changes. apache-airflow is pinned in the
#    same command so pip can neither up- nor downgrade the Airflow the image ships.
#    (Do not use _PIP_ADDITIONAL_REQUIREMENTS: it reinstalls on every container start.)
COPY --chown=airflow:0 requirements.txt /opt/airflow/requirements.txt
RUN pip install --no-cache-dir "apache-airflow==${AIRFLOW_VERSION}" -r /opt/airflow/requirements.txt

# 2. The newswatch package (found under plugins/ by pyproject.toml) and its `newswatch` CLI.
#    Editable, so that the ./plugins bind mount of docker-compose.yml is the code that runs.
COPY --chown=airflow:0 pyproject.toml README.md /opt/airflow/
COPY --chown=airflow:0 plugins/ /opt/airflow/plugins/
RUN pip install --no-cache-dir --no-deps -e /opt/airflow \
    && mkdir -p -m 0775 /opt/airflow/data

# 3. DAGs and configuration change most often: last.
COPY --chown=airflow:0 dags/ /opt/airflow/dags/
COPY --chown=airflow:0 config/ /opt/airflow/config/

ENV NEWSWATCH_CONFIG=/opt/airflow/config/newswatch.yaml \
    NEWSWATCH_DATA_DIR=/opt/airflow/data

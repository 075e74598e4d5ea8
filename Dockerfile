# One image for every process: api (the default), scheduler, executor and the one-off migrate.
#   docker build -t jobservice .
#   docker run --rm -e DATABASE_URL=postgresql://... jobservice                        # the api
#   docker run --rm -e DATABASE_URL=postgresql://... jobservice python -m services.executor
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# The project's metadata and packages first, so a change to the migrations or the compose file does not
# reinstall the dependencies. psycopg2-binary and grpcio ship manylinux wheels: no compiler is needed.
COPY pyproject.toml README.md ./
COPY shared ./shared
COPY services ./services
COPY jobclient ./jobclient
RUN pip install .

# /docs reads the proto's comments for its descriptions.
COPY proto ./proto

# What `alembic upgrade head` (the compose file's migrate service) reads.
COPY alembic.ini ./
COPY migrations ./migrations

RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin jobs
USER jobs

# gRPC, REST (/health, /metrics), executor metrics, scheduler metrics.
EXPOSE 50051 8000 8001 8002

CMD ["python", "-m", "services.api"]

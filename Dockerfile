# durable-sessions: one image for the control plane (`api`) and the workers (`worker`).
FROM python:3.11-slim-bookworm
WORKDIR /app
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY pyproject.toml README.md alembic.ini ./
COPY durable_sessions ./durable_sessions
COPY api ./api
COPY workers ./workers
COPY migrations ./migrations
RUN pip install --no-cache-dir . && useradd --system --uid 1000 ds
USER ds
ENTRYPOINT ["durable-sessions"]
CMD ["--help"]

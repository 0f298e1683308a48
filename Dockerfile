# One image for every Flywheel function: the scientific stack is larger than a zip may be.
# There is no CMD: each function sets its own handler as the image command (infra/components/functions.py).
# Python 3.12 on Amazon Linux 2023 (glibc 2.34): the pinned wheels exist for it, and .venv runs the same
# minor version (infra/image.py reads this line; `make lint` resolves requirements.txt for its platform).
FROM public.ecr.aws/lambda/python:3.12

# Dependencies first, so a code change rebuilds only the layers below. The constraints are the versions
# .venv is tested with, so the image resolves to the same ones.
COPY requirements.txt constraints.txt ${LAMBDA_TASK_ROOT}/
RUN pip install --no-cache-dir -r ${LAMBDA_TASK_ROOT}/requirements.txt -c ${LAMBDA_TASK_ROOT}/constraints.txt

COPY shared/ ${LAMBDA_TASK_ROOT}/shared/
COPY functions/ ${LAMBDA_TASK_ROOT}/functions/
# Model projects (models/<model>/): the code a contract's training.pipeline names, read by Train from here.
COPY models/ ${LAMBDA_TASK_ROOT}/models/

{{ cookiecutter.description | python_string }}

PROJECT_NAME = {{ cookiecutter.project_name | python_string }}

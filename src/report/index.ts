/** The HTML report of a comparison: charts (charts.ts, built from svg.ts's parts) on one self-contained page (page.ts). */
export { renderReport, studySettings } from './page';
export { renderCharts, groupColors } from './charts';
export { esc, type Chart } from './svg';

/**
 * Published per-file results of NAB's own windowed-Gaussian detector, standard profile, at its
 * corpus-optimised threshold 1.0 (numenta/NAB, results/windowedGaussian/
 * windowedGaussian_standard_scores.csv, MIT-licensed data and results), for the files of the NAB
 * subset shipped with etz's test data. Used to check this scoring port row for row.
 */
export const WINDOWED_GAUSSIAN_THRESHOLD = 1.0;

/** name → [score, tp, fp, fn] */
export const WINDOWED_GAUSSIAN_STANDARD: Record<string, [number, number, number, number]> = {
  'artificialNoAnomaly/art_daily_no_noise.csv': [0.0, 0, 0, 0],
  'artificialNoAnomaly/art_daily_perfect_square_wave.csv': [0.0, 0, 0, 0],
  'artificialNoAnomaly/art_daily_small_noise.csv': [0.0, 0, 0, 0],
  'artificialNoAnomaly/art_flatline.csv': [0.0, 0, 0, 0],
  'artificialNoAnomaly/art_noisy.csv': [0.0, 0, 0, 0],
  'artificialWithAnomaly/art_daily_flatmiddle.csv': [-1.0, 0, 0, 403],
  'artificialWithAnomaly/art_daily_jumpsdown.csv': [-1.0, 0, 0, 403],
  'artificialWithAnomaly/art_daily_jumpsup.csv': [-1.0, 0, 0, 403],
  'artificialWithAnomaly/art_daily_nojump.csv': [-1.0, 0, 0, 403],
  'artificialWithAnomaly/art_increase_spike_density.csv': [-1.0, 0, 0, 403],
  'artificialWithAnomaly/art_load_balancer_spikes.csv': [-0.6924446095227346, 18, 15, 385],
  'realAdExchange/exchange-2_cpc_results.csv': [-1.0, 0, 0, 163],
  'realAdExchange/exchange-2_cpm_results.csv': [-2.0, 0, 0, 162],
  'realAdExchange/exchange-3_cpc_results.csv': [2.5026632611866138, 5, 1, 148],
  'realAdExchange/exchange-3_cpm_results.csv': [0.862098587352162, 1, 0, 152],
  'realAdExchange/exchange-4_cpc_results.csv': [0.2922884634276035, 3, 4, 162],
  'realAdExchange/exchange-4_cpm_results.csv': [1.274710362684976, 4, 3, 160],
  'realTraffic/TravelTime_387.csv': [-1.7959813307852819, 1, 6, 248],
  'realTraffic/TravelTime_451.csv': [-1.0, 0, 0, 217],
  'realTraffic/occupancy_6005.csv': [-1.0, 0, 0, 239],
  'realTraffic/occupancy_t4013.csv': [1.725221520228401, 3, 0, 247],
  'realTraffic/speed_6005.csv': [-1.0, 0, 0, 239],
  'realTraffic/speed_7578.csv': [-4.0, 0, 0, 116],
  'realTraffic/speed_t4013.csv': [-2.0, 0, 0, 250],
  'realTweets/Twitter_volume_AAPL.csv': [1.5139968362565832, 42, 24, 1546],
  'realTweets/Twitter_volume_AMZN.csv': [1.5584829945714498, 10, 20, 1570],
  'realTweets/Twitter_volume_CRM.csv': [0.7638457640937151, 10, 0, 1583],
  'realTweets/Twitter_volume_CVS.csv': [0.77368206139354, 22, 18, 1504],
  'realTweets/Twitter_volume_FB.csv': [0.11975027819081463, 6, 15, 1576],
  'realTweets/Twitter_volume_GOOG.csv': [-0.14677735516717338, 23, 9, 1409],
  'realTweets/Twitter_volume_IBM.csv': [-0.7991094792289368, 14, 25, 1576],
  'realTweets/Twitter_volume_KO.csv': [-0.914196106944424, 22, 33, 1565],
  'realTweets/Twitter_volume_PFE.csv': [0.26557999349038663, 7, 12, 1581],
  'realTweets/Twitter_volume_UPS.csv': [-2.205164668202926, 57, 63, 1528],
};
